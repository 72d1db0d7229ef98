# One image for the web server and the workers (docker-compose.yml runs both from it).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The CPU torch wheel first: the bare `torch` requirement in pyproject.toml would pull a multi-GB CUDA build.
RUN pip install torch --index-url https://download.pytorch.org/whl/cpu

# Only what the package needs at run time: the code, the migrations, the page templates and static files.
COPY pyproject.toml README.md ./
COPY app ./app
COPY worker ./worker
COPY migrations ./migrations
COPY templates ./templates
COPY static ./static
# Editable, like the README's set-up: the app finds migrations/, templates/ and static/ next to its source.
RUN pip install -e .

# A non-root user owns the data folder (clips, uploads); a named volume mounted there inherits its owner.
RUN useradd --create-home --uid 1000 rlhf && mkdir -p /data && chown rlhf:rlhf /data
USER rlhf
ENV RLHF_DATA_DIR=/data

EXPOSE 8000
# Forwarded headers are trusted by the app from RLHF_FORWARDED_ALLOW_IPS only (default none), not by uvicorn.
CMD ["uvicorn", "--factory", "app.main:create_app_from_env", "--host", "0.0.0.0", "--port", "8000", "--no-proxy-headers"]

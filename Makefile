# Fresh-machine commands. `make demo` sets up and runs the main job; `make test` sets up and runs every test.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-fast services browser gl lint bench

# The CPU torch wheel goes in first: a bare torch requirement would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,mujoco]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/rlhf serve

# PostgreSQL on 127.0.0.1:5432 for the database tests (started when down).
services:
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@for i in $$(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && exit 0; sleep 1; done; echo "PostgreSQL did not start"; exit 1

# Debian's Chromium for the browser tests (Playwright drives it; it cannot download its own).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium chromium-driver)

# EGL and Mesa's software rasterizer, for MuJoCo clips without a display (worker/render.py picks EGL, else OSMesa).
gl:
	@ldconfig -p | grep -q 'libEGL.so.1 ' || (apt-get update -qq && apt-get install -y -qq libegl1 libgl1-mesa-dri)

test: setup services browser gl
	$(VENV)/bin/pytest

# The fast tier: no learning tests, no server or worker processes, no browser (under 90 s on two cores).
test-fast: setup services gl
	$(VENV)/bin/pytest -m "not slow and not process and not browser"

lint: setup
	$(VENV)/bin/ruff check app worker tests bench examples
	$(VENV)/bin/mypy

bench: setup
	$(VENV)/bin/pip install --quiet -e '.[bench]'
	$(PY) bench/label_efficiency.py
	$(PY) bench/ppo_throughput.py

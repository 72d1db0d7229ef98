"""The error answers each route documents in /openapi.json, with the bodies the service really sends
(`schemas.ErrorOut`, and `schemas.ValidationErrorOut` for 422 in place of FastAPI's HTTPValidationError)."""

from __future__ import annotations

from typing import Any

from app import schemas

DESCRIPTIONS = {
    400: "The body could not be parsed (not UTF-8, or a broken form).",
    401: "No token, or an unknown or revoked one.",
    403: "Not for this token: an admin route, an experiment the rater is not invited to, a revoked rater, or a "
    "write with the session cookie but without the CSRF token.",
    404: "An id that names nothing stored (or, in a path, no id at all).",
    409: "Well formed, but clashes with what is stored.",
    413: "The body is larger than RLHF_MAX_BODY_BYTES.",
    422: "Invalid input; `field` names it.",
    429: "Too many failed authentications from this address; retry after Retry-After seconds.",
    503: "The database connection was lost; retry after Retry-After seconds.",
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}}

# What every route under /api/v1 may answer: it authenticates, reads a bounded body and uses the database.
API_ERRORS = (400, 401, 403, 413, 422, 429, 503)


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error status codes."""
    return {
        code: {
            "model": schemas.ValidationErrorOut if code == 422 else schemas.ErrorOut,
            "description": DESCRIPTIONS[code],
            **({"headers": RETRY_AFTER} if code in (429, 503) else {}),
        }
        for code in codes
    }

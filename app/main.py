"""The web application: `create_app(settings)` builds everything; nothing is built at import time.

Run with `uvicorn --factory app.main:create_app_from_env` (settings from RLHF_* variables).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from app import crud, pages
from app.api import experiments, health, history, labels, pairs, raters, review, segments
from app.api.convert import API_PREFIX
from app.db import DatabaseRunner, make_engine, make_session_factory
from app.deps import TtlCache
from app.errors import Conflict, DomainError, Forbidden, Invalid, NotFound
from app.ratelimit import FailedAuthLimiter
from app.settings import Settings

logger = logging.getLogger("rlhf.app")

DOMAIN_STATUS = {
    NotFound: status.HTTP_404_NOT_FOUND,
    Conflict: status.HTTP_409_CONFLICT,
    Invalid: status.HTTP_422_UNPROCESSABLE_CONTENT,
    Forbidden: status.HTTP_403_FORBIDDEN,
}


class BodyTooLarge(BaseException):
    """Raised from `receive`; a BaseException so FastAPI's body parsing (which catches Exception and answers
    400) lets it through to the middleware that answers 413."""


class BodySizeLimitMiddleware:
    """413 for bodies over `max_bytes`: by Content-Length up front, and by counting streamed chunks."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await self._reject(send, 400, "content-length: not a number")
                    return
                if declared > self.max_bytes:
                    await self._reject(send, 413, f"body: larger than {self.max_bytes} bytes")
                    return
        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not response_started:
                await self._reject(send, 413, f"body: larger than {self.max_bytes} bytes")

    @staticmethod
    async def _reject(send: Send, code: int, detail: str) -> None:
        response = JSONResponse({"detail": detail, "field": detail.split(":")[0]}, status_code=code)
        await send({"type": "http.response.start", "status": code, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})


def _location(loc: Sequence[Any]) -> str:
    # ("body", "segments", 0, "obs") → "segments[0].obs"; query/path parameters keep their name.
    parts = [part for part in loc if part not in ("body", "query", "path", "header")]
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "body"


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def handle_domain_error(_request: Request, error: DomainError) -> JSONResponse:
        code = next(code for kind, code in DOMAIN_STATUS.items() if isinstance(error, kind))
        body: dict[str, Any] = {"detail": error.detail, "field": error.field}
        if isinstance(error, Invalid):  # the same body as a schema validation error (schemas.ValidationErrorOut)
            body["errors"] = [{"field": error.field, "message": error.message, "type": "value_error"}]
        return JSONResponse(body, status_code=code)

    @app.exception_handler(StarletteHTTPException)
    async def handle_http_error(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        # The service raises them with "field: message" details; Starlette's own ("Not Found") name no field.
        detail = str(error.detail)
        field = detail.split(": ", 1)[0] if ": " in detail else None
        return JSONResponse({"detail": detail, "field": field}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def handle_validation_error(_request: Request, error: RequestValidationError) -> JSONResponse:
        problems = error.errors()
        first = problems[0] if problems else {"loc": ("body",), "msg": "invalid request"}
        field = _location(first["loc"])
        if tuple(first["loc"][:1]) == ("path",):
            # A path id out of range or not a number (app.deps.PathId) names nothing stored.
            noun = field.removesuffix("_id")
            return JSONResponse(
                {"detail": f"{field}: no {noun} {first.get('input')}", "field": field},
                status_code=status.HTTP_404_NOT_FOUND,
            )
        if first.get("type") == "json_invalid":
            field = "body"
        errors = [
            {"field": _location(p["loc"]), "message": p["msg"], "type": p.get("type", "")}
            for p in problems[:20]
        ]
        return JSONResponse(
            {"detail": f"{field}: {first['msg']}", "field": field, "errors": errors},
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        )

    @app.exception_handler(DBAPIError)
    async def handle_database_error(request: Request, error: DBAPIError) -> JSONResponse:
        if not error.connection_invalidated:
            raise error  # a bug, not an outage: the server error handler answers 500 and logs it
        # The connection died mid-request (a database restart). Asking again is safe: an unfinished transaction
        # is rolled back, and a label sent with its idempotency key is stored once.
        return JSONResponse(
            {"detail": "database: connection lost, please retry", "field": "database"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(IntegrityError)
    async def handle_integrity_error(_request: Request, _error: IntegrityError) -> JSONResponse:
        # Races the data layer's checks could not see (e.g. the same rater labeling a pair twice at once).
        return JSONResponse(
            {"detail": "body: conflicts with stored data", "field": "body"},
            status_code=status.HTTP_409_CONFLICT,
        )


def create_app(settings: Settings) -> FastAPI:
    """Build the web app for `settings`: engine, embedded-SQLite migrations, admin token, routers."""
    if settings.is_sqlite and settings.auto_migrate_sqlite:
        from app.migrate import upgrade_database

        upgrade_database(settings)
    engine = make_engine(settings)
    session_factory = make_session_factory(engine)
    with session_factory() as session:
        try:
            admin_hash, generated = crud.ensure_admin_token(
                session, configured=settings.admin_token.get_secret_value() if settings.admin_token else None
            )
        except (OperationalError, ProgrammingError) as error:
            engine.dispose()
            raise RuntimeError("the database has no schema yet: run `rlhf db upgrade` first") from error
    if generated:
        # Printed once: only its hash is stored.
        print(f"rlhf: generated admin token (store it, it is shown only now): {generated}", file=sys.stderr)

    database = DatabaseRunner(session_factory, threads=settings.db_pool_size)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await database.open()
        yield
        await database.aclose()
        database.close()
        engine.dispose()

    app = FastAPI(
        title="rlhf-loop data service",
        version="1.0",
        description="Segments, pairs and labels for learning a reward from human preferences.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = session_factory
    app.state.database = database
    app.state.admin_token_hash = admin_hash
    app.state.generated_admin_token = generated
    app.state.auth_cache = TtlCache()
    app.state.auth_limiter = FailedAuthLimiter(settings.auth_failures_per_minute)
    add_error_handlers(app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.forwarded_allow_ips:
        # The request's scheme (Secure cookies) and client address (rate limits) as the trusted proxy saw them.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.forwarded_allow_ips)
    app.include_router(health.router)
    # Routes match in the order included: the raters' lease and label routes go first (fewer misses per call).
    for module in (pairs, labels, experiments, segments, raters):
        app.include_router(module.router, prefix=API_PREFIX)
    # Read views and corrections for the pages (a rater's progress and history; the admin's review).
    for module in (history, review):
        app.include_router(module.router, prefix=API_PREFIX)
    pages.install(app)  # HTML pages, their JSON endpoints and /static
    return app


def create_app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory app.main:create_app_from_env`."""
    return create_app(Settings())

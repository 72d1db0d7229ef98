"""FastAPI dependencies: settings, a database session per request, and who is calling."""

from __future__ import annotations

import hmac
import math
import random
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Form, HTTPException, Path, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from app import crud
from app.db import DatabaseRunner
from app.ratelimit import FailedAuthLimiter
from app.schemas import INT32_MAX
from app.settings import Settings

bearer_scheme = HTTPBearer(auto_error=False, description="The admin token or a rater's invite token.")


@dataclass(frozen=True)
class Principal:
    """The caller: the admin, or a rater (rater_id set)."""

    is_admin: bool
    rater_id: int | None = None


class TtlCache:
    """Positive answers for a few seconds (token hash → rater id, (rater, experiment) → invited), so the hot
    lease/label loop skips a query per request. Revoking a token or invitation takes effect within the TTL."""

    def __init__(self, ttl_seconds: float = 5.0, max_entries: int = 100_000) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._entries: dict[object, tuple[object, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: object) -> object | None:
        entry = self._entries.get(key)
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def forget(self, key: object) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def put(self, key: object, value: object) -> None:
        # A random share of the TTL: raters who signed in together do not all miss the cache together later.
        expires = time.monotonic() + self.ttl_seconds * random.uniform(0.5, 1.0)
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = (value, expires)


# Dependencies are `async def`: FastAPI runs sync ones in the thread pool, and a thread hop per dependency
# costs more than the lease query itself. Their only I/O, a token lookup when the cache misses, goes through
# the database runner (app.db.DatabaseRunner).


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_database(request: Request) -> DatabaseRunner:
    return request.app.state.database


async def get_session(request: Request) -> AsyncIterator[Session]:
    """A session per request of a sync route; it opens a connection only when first used (in the endpoint's
    thread). `async def` routes use none: the database runner opens sessions of its own."""
    factory: sessionmaker[Session] = request.app.state.session_factory
    session = factory()
    try:
        yield session
    finally:
        if session.in_transaction():
            await run_in_threadpool(session.close)  # returning the connection may talk to the database
        else:
            session.close()


# An id in a path. Out of range (or not a number) it names nothing stored: app.main answers 404 for it.
PathId = Annotated[int, Path(ge=1, le=INT32_MAX)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
DatabaseDep = Annotated[DatabaseRunner, Depends(get_database)]
SessionDep = Annotated[Session, Depends(get_session)]
CredentialsDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


# The pages keep the session token (a rater's invite token or the admin token) in an HttpOnly cookie, so their
# scripts cannot read it and send no Authorization header. A cookie rides along on cross-site requests too, so
# on unsafe methods it counts only with the CSRF token in the `X-CSRF-Token` header equal to the `rlhf_csrf`
# cookie (double submit: a cross-site page can read neither that cookie nor the page that embeds the token).
# Bearer tokens are never sent by the browser on its own and need no CSRF token.
TOKEN_COOKIE = "rlhf_token"
CSRF_COOKIE = "rlhf_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def check_csrf(request: Request, submitted: str | None, field: str = CSRF_HEADER) -> None:
    """403 naming `field` unless the submitted token equals the CSRF cookie."""
    expected = request.cookies.get(CSRF_COOKIE, "")
    if not expected or not submitted or not hmac.compare_digest(expected, submitted):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"{field}: missing or wrong CSRF token (it must equal the {CSRF_COOKIE} cookie)"
        )


async def get_principal(request: Request, credentials: CredentialsDep) -> Principal:
    """Admin or rater from the bearer token, or from the session cookie (plus the CSRF header on writes)."""
    return await authenticate(request, credentials, request.headers.get(CSRF_HEADER), CSRF_HEADER)


async def get_beacon_principal(
    request: Request,
    credentials: CredentialsDep,
    csrf_token: Annotated[
        str | None, Form(description=f"With the session cookie: the CSRF token, when not in {CSRF_HEADER}.")
    ] = None,
) -> Principal:
    """As get_principal, for routes a page calls with `navigator.sendBeacon`, which sends the cookies but no
    headers: the CSRF token may come as the form field `csrf_token` instead."""
    if request.headers.get(CSRF_HEADER):
        return await get_principal(request, credentials)
    return await authenticate(request, credentials, csrf_token, "csrf_token")


async def authenticate(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None,
    csrf_token: str | None,
    csrf_field: str,
) -> Principal:
    """The caller of a request carrying a bearer token, or the session cookie and, on writes, `csrf_token`."""
    token = presented_token(request, credentials.credentials if credentials else None, csrf_token, csrf_field)
    if not token:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "authorization: bearer token required",
            {"WWW-Authenticate": "Bearer"},
        )
    refuse_if_guessing(request)
    principal = cached_principal(request, token)
    if principal is None:
        database: DatabaseRunner = request.app.state.database
        principal = _remember_rater(request, token, await database.read(crud.rater_for_token_in, token=token))
    if principal is None:
        record_failed_auth(request)
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "authorization: unknown or revoked token",
            {"WWW-Authenticate": "Bearer"},
        )
    return principal


def presented_token(request: Request, bearer: str | None, csrf_token: str | None, csrf_field: str) -> str:
    """The bearer token, else the session cookie's (checking `csrf_token` on writes: 403 naming `csrf_field`);
    empty when there is neither."""
    if bearer is not None:
        return bearer
    token = request.cookies.get(TOKEN_COOKIE, "")
    if token and request.method not in SAFE_METHODS:
        check_csrf(request, csrf_token, csrf_field)
    return token


def refuse_if_guessing(request: Request) -> None:
    """429 with Retry-After while the client's address is past its budget of failed authentications."""
    limiter: FailedAuthLimiter = request.app.state.auth_limiter
    wait = limiter.retry_after(_client_address(request))
    if wait is not None:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "authorization: too many failed attempts from this address, try again later",
            {"Retry-After": str(math.ceil(wait))},
        )


def record_failed_auth(request: Request) -> None:
    """Count an unknown token, invite link or admin token against the client's address."""
    request.app.state.auth_limiter.record_failure(_client_address(request))


def _client_address(request: Request) -> str:
    # Behind a trusted proxy this is the forwarded client address (RLHF_FORWARDED_ALLOW_IPS).
    return request.client.host if request.client else ""


def cached_principal(request: Request, token: str) -> Principal | None:
    """The admin, or the rater the short-lived cache knows the token of; None: ask the database."""
    token_hash = crud.hash_token(token)
    if hmac.compare_digest(token_hash, request.app.state.admin_token_hash):
        return Principal(is_admin=True)
    rater_id = request.app.state.auth_cache.get(token_hash)
    return None if rater_id is None else Principal(is_admin=False, rater_id=int(rater_id))


def principal_for_token(request: Request, session: Session, token: str) -> Principal | None:
    """The admin or the active rater the token belongs to (from a short-lived cache, else the database), or None."""
    principal = cached_principal(request, token)
    if principal is not None:
        return principal
    rater_id = crud.rater_id_for_token(session, token=token)
    # Hand the connection back now: a request parked between dependency and endpoint must not hold one of
    # the pool's connections meanwhile.
    session.rollback()
    return _remember_rater(request, token, rater_id)


def _remember_rater(request: Request, token: str, rater_id: int | None) -> Principal | None:
    if rater_id is None:
        return None
    request.app.state.auth_cache.put(crud.hash_token(token), rater_id)
    return Principal(is_admin=False, rater_id=rater_id)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def require_admin(principal: PrincipalDep) -> Principal:
    if not principal.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "authorization: admin token required")
    return principal


async def require_rater(principal: PrincipalDep) -> Principal:
    return _rater_only(principal)


def _rater_only(principal: Principal) -> Principal:
    if principal.rater_id is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "authorization: a rater token is required")
    return principal


async def require_beacon_rater(principal: Annotated[Principal, Depends(get_beacon_principal)]) -> Principal:
    return _rater_only(principal)


AdminDep = Annotated[Principal, Depends(require_admin)]
RaterDep = Annotated[Principal, Depends(require_rater)]
BeaconRaterDep = Annotated[Principal, Depends(require_beacon_rater)]


@dataclass(frozen=True)
class RaterCall:
    """A rater's request on a hot path (lease, label, undo, the page's polling reads): the rater, and the app's
    database runner and settings. One dependency rather than four: FastAPI's work per dependency cost more
    than a lease's statements."""

    rater_id: int
    database: DatabaseRunner
    settings: Settings
    auth_cache: TtlCache

    @classmethod
    def serving(cls, request: Request, rater_id: int) -> RaterCall:
        """The call of rater `rater_id` on the app serving `request`."""
        state = request.app.state
        return cls(rater_id, state.database, state.settings, state.auth_cache)

    async def require_access(self, experiment_id: int) -> None:
        """check_experiment_access with the auth cache: a database read only on a miss."""
        key = ("invited", self.rater_id, experiment_id)
        if self.auth_cache.get(key):
            return
        if await self.database.read(crud.invited_in, experiment_id=experiment_id, rater_id=self.rater_id):
            self.auth_cache.put(key, True)
        else:  # 404 or 403, and why
            principal = Principal(is_admin=False, rater_id=self.rater_id)
            await self.database.run(check_experiment_access, principal, experiment_id)


async def get_rater_call(request: Request, credentials: CredentialsDep) -> RaterCall:
    principal = _rater_only(await get_principal(request, credentials))
    assert principal.rater_id is not None
    return RaterCall.serving(request, principal.rater_id)


RaterCallDep = Annotated[RaterCall, Depends(get_rater_call)]


def check_experiment_access(session: Session, principal: Principal, experiment_id: int) -> None:
    """Admins see every experiment; a rater only those invited to (403), unknown ids are 404."""
    if principal.is_admin:
        crud.get_experiment(session, experiment_id=experiment_id)
        return
    assert principal.rater_id is not None
    if not crud.is_invited(session, rater_id=principal.rater_id, experiment_id=experiment_id):
        crud.get_experiment(session, experiment_id=experiment_id)  # unknown id: 404; known but not invited: 403
        raise HTTPException(status.HTTP_403_FORBIDDEN, "experiment_id: the rater is not invited to this experiment")

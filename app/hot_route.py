"""A fast lane through FastAPI for the raters' hot routes (lease, label): the common request skips dependency
solving and response re-validation; every other request takes FastAPI's own path, unchanged.

Why: in a profile of lease + label on SQLite, FastAPI's dependency solving, parameter validation and response
serialization took about as much CPU as the database work itself. A rater's request is nearly always the same
shape: a bearer token or session cookie the auth cache knows, an id in the path, a small JSON body. Those are
parsed here directly. Anything else — no or unknown token, a query string, a body that does not validate, a
wrong content type — goes to FastAPI's handler for the same route, which answers it exactly as before (401,
422 naming the field...). The route's signature, OpenAPI entry and error answers stay FastAPI's; while an app
has dependency overrides, every request takes the full path.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, get_type_hints

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from app.deps import (
    CSRF_HEADER,
    PathId,
    RaterCall,
    RaterCallDep,
    cached_principal,
    presented_token,
    refuse_if_guessing,
)
from app.schemas import INT32_MAX

NOT_FAST = object()
"""What a parameter reader returns when the request needs FastAPI's full path."""

Reader = Callable[[Request], Awaitable[Any]]


async def _rater_call(request: Request) -> Any:
    scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
    is_bearer = scheme.lower() == "bearer" and bearer
    # The rater's page signs in with the session cookie and sends the CSRF header on writes (403 if wrong).
    token = presented_token(request, bearer if is_bearer else None, request.headers.get(CSRF_HEADER), CSRF_HEADER)
    if not token:
        return NOT_FAST
    refuse_if_guessing(request)  # 429 for an address past its failed-auth budget, as on the full path
    principal = cached_principal(request, token)
    if principal is None or principal.rater_id is None:
        return NOT_FAST  # a cache miss, the admin, or a bad token: the full path looks it up and answers
    return RaterCall.serving(request, principal.rater_id)


def _path_id(name: str) -> Reader:
    async def read(request: Request) -> Any:
        text = request.path_params.get(name, "")
        if not (isinstance(text, str) and text.isascii() and text.isdigit()):
            return NOT_FAST
        value = int(text)
        return value if 1 <= value <= INT32_MAX else NOT_FAST

    return read


def _json_body(model: type[BaseModel]) -> Reader:
    async def read(request: Request) -> Any:
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            return NOT_FAST
        try:
            return model.model_validate_json(await request.body())  # the body is cached for the full path
        except ValidationError:
            return NOT_FAST

    return read


def _readers(endpoint: Callable[..., Any]) -> dict[str, Reader] | None:
    """A reader per parameter of `endpoint`, or None when one is of a kind this lane does not read."""
    hints = get_type_hints(endpoint, include_extras=True)
    readers: dict[str, Reader] = {}
    for name, parameter in inspect.signature(endpoint).parameters.items():
        hint = hints[name]
        if hint == RaterCallDep:
            readers[name] = _rater_call
        elif hint == PathId:
            readers[name] = _path_id(name)
        elif inspect.isclass(hint) and issubclass(hint, BaseModel):
            readers[name] = _json_body(hint)
        elif parameter.default is None:
            readers[name] = _no_query_string  # an optional query parameter: absent in the fast lane
        else:
            return None
    # The caller last: the cheap checks of path, query and body decide first whether the lane applies at all.
    return dict(sorted(readers.items(), key=lambda item: item[1] is _rater_call))


async def _no_query_string(request: Request) -> Any:
    return None if not request.scope.get("query_string") else NOT_FAST


class HotRoute(APIRoute):
    """An APIRoute with the fast lane (module docstring) in front of FastAPI's handler.

    The endpoint must be `async def`, take only a RaterCallDep, PathId path ids, one JSON body model and optional
    query parameters, and return its response model or a Response.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        full_path = super().get_route_handler()
        readers = _readers(self.endpoint)
        assert readers is not None and inspect.iscoroutinefunction(self.endpoint), self.path
        endpoint = self.endpoint
        status_code = self.status_code or 200

        async def handler(request: Request) -> Response:
            if request.app.dependency_overrides:  # only FastAPI's path honours them
                return await full_path(request)
            arguments = {}
            for name, read in readers.items():
                value = await read(request)
                if value is NOT_FAST:
                    return await full_path(request)
                arguments[name] = value
            result = await endpoint(**arguments)
            if isinstance(result, Response):
                return result
            return Response(result.model_dump_json(by_alias=True), status_code, media_type="application/json")

        return handler


def hot_post(router: APIRouter, path: str, **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`@router.post(path, **options)` with the fast lane (HotRoute)."""

    def decorator(endpoint: Callable[..., Any]) -> Callable[..., Any]:
        router.add_api_route(path, endpoint, methods=["POST"], route_class_override=HotRoute, **options)
        return endpoint

    return decorator

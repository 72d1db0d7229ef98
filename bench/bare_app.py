"""The lease and label routes of the API with nothing behind them, for `bench/api_load.py --db ceiling`.

Answers like the real server (same paths, same JSON shapes and status codes) without touching a database, so
the load generator's rate against it is the most any server could reach under that load on this machine.
"""

from __future__ import annotations

import itertools

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

_next_id = itertools.count(1)


async def lease(request: Request) -> JSONResponse:
    return JSONResponse({"lease_id": next(_next_id), "pair_id": next(_next_id)})


async def label(request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse({"id": next(_next_id)}, status_code=201)


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        Route("/api/v1/experiments/{experiment_id:int}/leases", lease, methods=["POST"]),
        Route("/api/v1/labels", label, methods=["POST"]),
        Route("/healthz", health),
    ]
)

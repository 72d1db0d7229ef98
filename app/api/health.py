"""Liveness with a database round trip, for load balancers and `docker compose` health checks."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from sqlalchemy.exc import SQLAlchemyError

from app import db, schemas
from app.api.responses import errors
from app.deps import DatabaseDep

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=schemas.Health, responses=errors(503))
async def get_health(database: DatabaseDep) -> schemas.Health:
    """Answer ok when the database answers a ping; 503 otherwise."""
    try:
        await database.run(db.ping)
    except SQLAlchemyError as error:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "database: unreachable") from error
    return schemas.Health(status="ok", database=database.dialect)

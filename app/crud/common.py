"""Helpers shared by the data-layer modules: UTC times, tokens, get-or-404."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy.orm import Session

from app.errors import NotFound

Row = TypeVar("Row")


def as_utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def hash_token(token: str) -> str:
    """Tokens are 256 random bits, so one SHA-256 is enough to store them safely."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def get_or_not_found(session: Session, *, model: type[Row], row_id: int, noun: str) -> Row:
    """The row with this primary key, or NotFound naming the `<noun>_id` field (an API 404)."""
    row = session.get(model, row_id)
    if row is None:
        raise NotFound(f"{noun}_id", f"no {noun} {row_id}")
    return row

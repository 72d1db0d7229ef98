"""Helpers shared by the data-layer modules: UTC times, tokens, get-or-404, a pair's two segments."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from typing import Any, TypeVar, TypeVarTuple

from sqlalchemy import ColumnElement, Select
from sqlalchemy.orm import QueryableAttribute, Session, aliased

from app.errors import NotFound
from app.models import Lease, Pair, Segment

Row = TypeVar("Row")
Columns = TypeVarTuple("Columns")

# A pair's two segments, under names of their own: a pair joins the segments table twice.
LEFT_SEGMENT = aliased(Segment, name="left_segment")
RIGHT_SEGMENT = aliased(Segment, name="right_segment")


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


def held_leases(experiment_id: Any, rater_id: Any, now: Any) -> tuple[ColumnElement[bool], ...]:
    """Conditions on a Lease joined to its Pair for a lease the rater holds in the experiment: live, on a pending
    pair (values or bind parameters)."""
    return (
        Lease.experiment_id == experiment_id,
        Lease.rater_id == rater_id,
        Lease.expires_at > now,
        Pair.status == "pending",
    )


def join_pair_segments(
    query: Select[*Columns], *, pair_id: ColumnElement[int] | QueryableAttribute[int] | None = None
) -> Select[*Columns]:
    """`query` joined to its pair and that pair's LEFT_SEGMENT and RIGHT_SEGMENT, whose columns it may select.

    `pair_id` is the column naming the pair (`Label.pair_id`, `Lease.pair_id`, a CTE's column); None when `query`
    selects from the pairs table itself.
    """
    if pair_id is not None:
        query = query.join(Pair, Pair.id == pair_id)
    return query.join(LEFT_SEGMENT, LEFT_SEGMENT.id == Pair.left_segment_id).join(
        RIGHT_SEGMENT, RIGHT_SEGMENT.id == Pair.right_segment_id
    )

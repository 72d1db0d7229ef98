"""A rater's own view of an experiment: progress (kept on the server, so a reload keeps it), their recent
answers, and changing one of them while the experiment runs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from app.crud.common import LEFT_SEGMENT, RIGHT_SEGMENT, as_utc, held_leases, join_pair_segments
from app.crud.experiments import get_experiment
from app.db import is_sqlite, write_transaction
from app.errors import Conflict, Invalid, NotFound
from app.models import Label, Lease, Pair, utcnow
from app.vocabulary import CHOICES, ClipStatus


@dataclass(frozen=True)
class RaterProgress:
    """What the labeling page counts, for one rater of one experiment."""

    labels: int
    """Labels this rater has stored in the experiment (all sessions)."""
    pairs_waiting: int
    """Pending pairs the rater has not labeled (those the rater holds included)."""
    held_by_others: int
    """Of those, pairs the rater cannot get now because other raters' live leases fill them."""
    holding: int
    """Pairs the rater holds a live lease on."""


def _live_leases(now: datetime, of_pair: object) -> object:
    return (
        select(func.count()).select_from(Lease).where(Lease.pair_id == of_pair, Lease.expires_at > now)
    ).scalar_subquery()


def rater_progress(session: Session, *, experiment_id: int, rater_id: int) -> RaterProgress:
    """Counts for the labeling page: the rater's labels, what waits, and what others hold."""
    now = utcnow()
    labels = session.scalar(
        select(func.count()).where(Label.experiment_id == experiment_id, Label.rater_id == rater_id)
    )
    not_labeled = ~exists().where(Label.pair_id == Pair.id, Label.rater_id == rater_id)
    mine = exists().where(Lease.pair_id == Pair.id, Lease.rater_id == rater_id, Lease.expires_at > now)
    waiting = session.scalar(
        select(func.count())
        .select_from(Pair)
        .where(Pair.experiment_id == experiment_id, Pair.status == "pending", not_labeled)
    )
    held_by_others = session.scalar(
        select(func.count())
        .select_from(Pair)
        .where(
            Pair.experiment_id == experiment_id,
            Pair.status == "pending",
            not_labeled,
            ~mine,
            Pair.labels_count + _live_leases(now, Pair.id) >= Pair.labels_wanted,  # type: ignore[operator]
        )
    )
    holding = session.scalar(
        select(func.count())
        .select_from(Lease)
        .join(Pair, Pair.id == Lease.pair_id)
        .where(*held_leases(experiment_id, rater_id, now))
    )
    return RaterProgress(
        labels=labels or 0, pairs_waiting=waiting or 0, held_by_others=held_by_others or 0, holding=holding or 0
    )


@dataclass(frozen=True)
class HistoryEntry:
    """One of the rater's answers, with what the page needs to show both clips' posters."""

    label_id: int
    pair_id: int
    choice: str
    created_at: datetime
    left_segment_id: int
    right_segment_id: int
    left_clip_status: ClipStatus
    right_clip_status: ClipStatus


def rater_history(session: Session, *, experiment_id: int, rater_id: int, limit: int = 20) -> list[HistoryEntry]:
    """The rater's latest answers in the experiment, newest first."""
    query = select(
        Label.id,
        Label.pair_id,
        Label.choice,
        Label.created_at,
        Pair.left_segment_id,
        Pair.right_segment_id,
        LEFT_SEGMENT.clip_status,
        RIGHT_SEGMENT.clip_status,
    )
    rows = session.execute(
        join_pair_segments(query, pair_id=Label.pair_id)
        .where(Label.experiment_id == experiment_id, Label.rater_id == rater_id)
        .order_by(Label.id.desc())
        .limit(limit)
    ).all()
    return [
        HistoryEntry(
            label_id=row[0],
            pair_id=row[1],
            choice=row[2],
            created_at=as_utc(row[3]),
            left_segment_id=row[4],
            right_segment_id=row[5],
            left_clip_status=row[6],
            right_clip_status=row[7],
        )
        for row in rows
    ]


def change_label(session: Session, *, rater_id: int, label_id: int, choice: str) -> Label:
    """Replace one of the rater's answers by another choice, in one transaction.

    The old label is deleted and the new one stored under a new id (with the same pair, rater and response
    time), so the pair's label count does not move and the worker, which keys its training labels by id, sees
    the change and refits. Allowed while the experiment is not done.

    Returns:
        The new label (detached).
    """
    if choice not in CHOICES:
        raise Invalid("choice", f"must be one of {', '.join(CHOICES)}")
    with write_transaction(session):
        query = select(Label).where(Label.id == label_id, Label.rater_id == rater_id)
        if not is_sqlite(session):
            query = query.with_for_update()
        old = session.scalar(query)
        if old is None:
            raise NotFound("label_id", f"no label {label_id} of this rater")
        experiment = get_experiment(session, experiment_id=old.experiment_id)
        if experiment.status == "done":
            raise Conflict("label_id", "the experiment is done; its labels can no longer change")
        if old.choice == choice:
            return old
        values = {
            "experiment_id": old.experiment_id,
            "pair_id": old.pair_id,
            "rater_id": old.rater_id,
            "response_time_ms": old.response_time_ms,
        }
        session.delete(old)
        session.flush()  # the (pair, rater) unique constraint: the old row goes first
        new = Label(**values, choice=choice, idempotency_key=None, created_at=utcnow())
        session.add(new)
        session.flush()
    return new

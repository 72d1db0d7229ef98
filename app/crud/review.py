"""The admin's review of an experiment: the queue (who holds which pair until when), the pairs raters
disagree on, and dropping a careless rater's labels so the worker stops training on them."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.crud.common import LEFT_SEGMENT, RIGHT_SEGMENT, as_utc, join_pair_segments
from app.crud.experiments import get_experiment
from app.db import is_sqlite, write_transaction
from app.errors import NotFound
from app.models import Label, Lease, Pair, Rater, utcnow
from app.stats import perfect_teacher_choice
from app.vocabulary import ClipStatus


@dataclass(frozen=True)
class HeldPair:
    """A live lease: who holds which pending pair until when."""

    lease_id: int
    pair_id: int
    rater_id: int
    rater_name: str
    rater_kind: str
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class QueueView:
    """Pending pairs, how many of them raters hold now, and every live lease (soonest to expire first)."""

    pairs_pending: int
    held_by_humans: int
    """Pending pairs with a live lease of a human rater: the synthetic teacher gets them once those expire."""
    leases: list[HeldPair]


def queue_view(session: Session, *, experiment_id: int) -> QueueView:
    get_experiment(session, experiment_id=experiment_id)
    now = utcnow()
    pending = session.scalar(select(func.count()).where(Pair.experiment_id == experiment_id, Pair.status == "pending"))
    rows = session.execute(
        select(Lease.id, Lease.pair_id, Lease.rater_id, Rater.name, Rater.kind, Lease.created_at, Lease.expires_at)
        .join(Pair, Pair.id == Lease.pair_id)
        .join(Rater, Rater.id == Lease.rater_id)
        .where(Lease.experiment_id == experiment_id, Lease.expires_at > now, Pair.status == "pending")
        .order_by(Lease.expires_at, Lease.id)
    ).all()
    leases = [
        HeldPair(
            lease_id=row[0],
            pair_id=row[1],
            rater_id=row[2],
            rater_name=row[3],
            rater_kind=row[4],
            created_at=as_utc(row[5]),
            expires_at=as_utc(row[6]),
        )
        for row in rows
    ]
    held_by_humans = len({lease.pair_id for lease in leases if lease.rater_kind == "human"})
    return QueueView(pairs_pending=pending or 0, held_by_humans=held_by_humans, leases=leases)


@dataclass(frozen=True)
class Answer:
    rater_id: int
    rater_name: str
    choice: str


@dataclass(frozen=True)
class Disagreement:
    """A pair whose raters gave different preferences ("can't tell" answers are listed but do not count)."""

    pair_id: int
    left_segment_id: int
    right_segment_id: int
    left_clip_status: ClipStatus
    right_clip_status: ClipStatus
    answers: list[Answer]
    teacher_choice: str | None
    """What a perfect teacher answers from the true returns; None when unknown."""


def disagreements(session: Session, *, experiment_id: int, limit: int = 50) -> list[Disagreement]:
    """Pairs labeled by two or more raters whose non-skip answers differ, newest pair first."""
    get_experiment(session, experiment_id=experiment_id)
    query = select(
        Label.pair_id,
        Label.rater_id,
        Rater.name,
        Label.choice,
        Pair.left_segment_id,
        Pair.right_segment_id,
        LEFT_SEGMENT.clip_status,
        RIGHT_SEGMENT.clip_status,
        LEFT_SEGMENT.true_return,
        RIGHT_SEGMENT.true_return,
    ).join(Rater, Rater.id == Label.rater_id)
    rows = session.execute(
        join_pair_segments(query, pair_id=Label.pair_id)
        .where(Label.experiment_id == experiment_id)
        .order_by(Label.pair_id.desc(), Label.id)
    ).all()
    by_pair: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
        by_pair[row[0]].append(row)
    found = []
    for pair_id, labels in by_pair.items():  # newest pair first (rows are ordered so)
        preferences = {row[3] for row in labels if row[3] != "skip"}
        if len(preferences) < 2:
            continue
        first = labels[0]
        found.append(
            Disagreement(
                pair_id=pair_id,
                left_segment_id=first[4],
                right_segment_id=first[5],
                left_clip_status=first[6],
                right_clip_status=first[7],
                answers=[Answer(rater_id=row[1], rater_name=row[2], choice=row[3]) for row in labels],
                teacher_choice=perfect_teacher_choice(first[8], first[9]),
            )
        )
        if len(found) >= limit:
            break
    return found


def drop_rater_labels(session: Session, *, experiment_id: int, rater_id: int) -> list[dict[str, Any]]:
    """Delete every label of the rater in the experiment; their pairs wait for labels again.

    The worker reads the labels in full before every fit and refits when they changed, so it stops training
    on these at its next look. The rater may still label other pairs.

    Returns:
        The dropped labels as records (label_id, pair_id, choice, response_time_ms, created_at), for the
        caller to keep.
    """
    get_experiment(session, experiment_id=experiment_id)
    with write_transaction(session):
        if session.get(Rater, rater_id) is None:
            raise NotFound("rater_id", f"no rater {rater_id}")
        labels = list(
            session.scalars(
                select(Label).where(Label.experiment_id == experiment_id, Label.rater_id == rater_id).order_by(Label.id)
            )
        )
        pair_ids = sorted({label.pair_id for label in labels})
        if pair_ids:
            query = select(Pair).where(Pair.id.in_(pair_ids)).order_by(Pair.id)
            if not is_sqlite(session):
                query = query.with_for_update()
            for pair in session.scalars(query):
                pair.labels_count -= sum(label.pair_id == pair.id for label in labels)
                if pair.status != "cancelled":
                    pair.status = "complete" if pair.labels_count >= pair.labels_wanted else "pending"
            session.execute(delete(Label).where(Label.id.in_([label.id for label in labels])))
        records = [
            {
                "label_id": label.id,
                "pair_id": label.pair_id,
                "rater_id": label.rater_id,
                "choice": label.choice,
                "response_time_ms": label.response_time_ms,
                "created_at": as_utc(label.created_at).isoformat(),
            }
            for label in labels
        ]
    return records

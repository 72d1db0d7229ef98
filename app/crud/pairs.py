"""Pairs and leases: queue pairs, lease the next one to a rater, give a lease back."""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, and_, bindparam, delete, exists, func, literal, or_, select, union_all, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from app.crud.common import (
    LEFT_SEGMENT,
    RIGHT_SEGMENT,
    as_utc,
    get_or_not_found,
    held_leases,
    join_pair_segments,
)
from app.crud.experiments import get_experiment
from app.db import blocking_twin, write_transaction
from app.driver import Prepared, Transaction
from app.errors import Forbidden, Invalid, NotFound
from app.models import (
    Label,
    Lease,
    Pair,
    Rater,
    Segment,
    utcnow,
)
from app.schemas import INT32_MAX, PairIn
from app.vocabulary import ClipStatus


def add_pairs(session: Session, *, experiment_id: int, pairs: Sequence[PairIn], source: str = "api") -> list[int]:
    """Queue pairs of this experiment's segments for labeling."""
    experiment = get_experiment(session, experiment_id=experiment_id)
    wanted_ids = {p.left_segment_id for p in pairs} | {p.right_segment_id for p in pairs}
    owners = dict(session.execute(select(Segment.id, Segment.experiment_id).where(Segment.id.in_(wanted_ids))).all())
    for i, pair in enumerate(pairs):
        if pair.left_segment_id == pair.right_segment_id:
            raise Invalid(f"pairs[{i}].right_segment_id", "a segment cannot be compared with itself")
        for side in ("left_segment_id", "right_segment_id"):
            segment_id = getattr(pair, side)
            if segment_id not in owners:
                raise NotFound(f"pairs[{i}].{side}", f"no segment {segment_id}")
            if owners[segment_id] != experiment_id:
                raise Invalid(f"pairs[{i}].{side}", f"segment {segment_id} belongs to another experiment")
    with write_transaction(session):
        rows = [
            Pair(
                experiment_id=experiment_id,
                left_segment_id=pair.left_segment_id,
                right_segment_id=pair.right_segment_id,
                priority=pair.priority,
                acquisition_score=pair.acquisition_score,
                labels_wanted=pair.labels_wanted or experiment.labels_per_pair,
                source=source,
            )
            for pair in pairs
        ]
        session.add_all(rows)
        session.flush()
    return [row.id for row in rows]


def get_pair(session: Session, *, pair_id: int) -> Pair:
    return get_or_not_found(session, model=Pair, row_id=pair_id, noun="pair")


def pending_pairs(session: Session, *, experiment_id: int) -> list[Pair]:
    """Pairs still waiting for labels, oldest first."""
    return list(
        session.scalars(
            select(Pair).where(Pair.experiment_id == experiment_id, Pair.status == "pending").order_by(Pair.id)
        )
    )


def count_pairs_asked(session: Session, *, experiment_id: int) -> int:
    """Pairs asked about so far (pending or complete; cancelled ones do not count)."""
    query = select(func.count()).where(Pair.experiment_id == experiment_id, Pair.status != "cancelled")
    return session.scalar(query) or 0


def leased_pair_ids(session: Session, *, experiment_id: int, rater_id: int) -> list[int]:
    """Pending pairs the rater holds a lease on (live or expired): a restarted oracle answers these first."""
    query = (
        select(Lease.pair_id)
        .join(Pair, Pair.id == Lease.pair_id)
        .where(Lease.experiment_id == experiment_id, Lease.rater_id == rater_id, Pair.status == "pending")
        .order_by(Lease.pair_id)
    )
    return list(session.scalars(query))


@dataclass(frozen=True)
class LeaseInfo:
    """A pair held by a rater until `expires_at`, with what the page needs to show its two clips."""

    lease_id: int
    pair_id: int
    experiment_id: int
    rater_id: int
    expires_at: datetime
    left_segment_id: int
    right_segment_id: int
    left_clip_status: ClipStatus
    right_clip_status: ClipStatus


# The lease and label hot paths use Core statements built once (SQLAlchemy then reuses their compiled form,
# psycopg prepares them on each connection after a few runs): building ORM statements per request cost more
# than running them. Each is a handful of statements, since on PostgreSQL every statement is a round trip.


def _upsert(postgres: bool) -> Any:
    return postgresql_insert if postgres else sqlite_insert


@functools.cache
def _lease_statements(postgres: bool, excluding: bool) -> dict[str, Prepared]:
    now = bindparam("now", type_=Lease.expires_at.type)
    rater_id = bindparam("rater_id", type_=Integer())
    pair_id = bindparam("pair_id", type_=Integer())
    experiment_id = bindparam("experiment_id", type_=Integer())
    shown = bindparam("exclude", expanding=True, type_=Integer())

    def live_leases(of_pair: Any, *where: Any) -> Any:
        return (
            select(func.count()).select_from(Lease).where(Lease.pair_id == of_pair, Lease.expires_at > now, *where)
        ).scalar_subquery()

    # The rater's row, locked on PostgreSQL so that one rater's lease calls take turns (the cap on pairs held
    # holds under concurrency); a revoked rater leases nothing, even while an auth cache still knows the token.
    rater = select(Rater.active).where(Rater.id == rater_id)
    if postgres:
        # FOR NO KEY UPDATE: a plain FOR UPDATE would also block the foreign-key checks of the rater's own label
        # inserts, and a label waiting on this row while holding its pair's lock deadlocked with leases.
        rater = rater.with_for_update(key_share=True)
        # The lease commits without waiting for its WAL flush (asynchronous commit, about 0.3 ms here): a lease
        # is a claim that expires anyway, and one lost in a crash of the database server costs nothing kept (the
        # pair is leased again). Labels, undos and everything else keep the synchronous commit.
        rater = rater.add_columns(func.set_config("synchronous_commit", "off", True))
    # The pair to lease, in one statement after the lock (on PostgreSQL it then sees the leases of the rater's
    # calls that held the lock before): the oldest pair the rater holds that the caller does not show, for a
    # new term; else, while the rater holds fewer than the cap, the best candidate.
    # `held`, the rater's live leases on pending pairs, is found once (an index scan of ix_leases_rater_expiry)
    # for its uses; left to the planner, the hand-back's ORDER BY lease id LIMIT 1 walked every lease by id.
    held = (
        select(Lease.id.label("lease_id"), Lease.pair_id)
        .join(Pair, Pair.id == Lease.pair_id)
        .where(*held_leases(experiment_id, rater_id, now))
        .cte("held")
        .prefix_with("MATERIALIZED")
    )
    clip_statuses = (
        LEFT_SEGMENT.clip_status.label("left_clip_status"),
        RIGHT_SEGMENT.clip_status.label("right_clip_status"),
    )
    pair_columns = (Pair.labels_count, Pair.labels_wanted, Pair.left_segment_id, Pair.right_segment_id)
    handed_back = (
        join_pair_segments(select(held.c.lease_id, Pair.id, *pair_columns, *clip_statuses), pair_id=held.c.pair_id)
        .where(held.c.pair_id.not_in(shown))
        .order_by(held.c.lease_id)
        .limit(1)
    )
    held_count = select(func.count()).select_from(held).scalar_subquery()
    candidate = (
        join_pair_segments(select(literal(None, Integer()).label("lease_id"), Pair.id, *pair_columns, *clip_statuses))
        .where(
            ~exists().where(held.c.pair_id.not_in(shown)),
            held_count < bindparam("max_held", type_=Integer()),
            Pair.experiment_id == experiment_id,
            Pair.status == "pending",
            Pair.labels_count + live_leases(Pair.id) < Pair.labels_wanted,
            ~exists().where(Label.pair_id == Pair.id, Label.rater_id == rater_id),
            Pair.id.not_in(select(held.c.pair_id)),
        )
        # Highest priority first, then the newest pair (behaviour of the latest policy is the most useful
        # to label); both walk ix_pairs_queue backwards, so no sort and an early stop.
        .order_by(Pair.priority.desc(), Pair.id.desc())
        .limit(1)
    )
    if excluding:
        candidate = candidate.where(Pair.id.not_in(bindparam("rejected", expanding=True)))
    if postgres:
        candidate = candidate.with_for_update(skip_locked=True, of=Pair)
    pick = union_all(select(handed_back.subquery()), select(candidate.subquery()))
    # Handed back for a new term: a page that left (a reload) releases its old term by beacon, which may
    # arrive after the new page asked; naming the old expiry, it releases nothing.
    renew = (
        update(Lease)
        .where(Lease.id == bindparam("lease_id", type_=Integer()))
        .values(created_at=now, expires_at=bindparam("expires_at", type_=Lease.expires_at.type))
    )
    # Inserts the lease only if the pair still has room. On PostgreSQL this re-counts under the pair's row
    # lock in a fresh statement, so it sees leases committed by earlier lock holders after the candidate
    # query's snapshot; on SQLite the transaction runs alone and the condition always holds. A rater's own
    # expired lease on the pair is renewed in place (unique pair_id, rater_id).
    values = select(
        pair_id,
        rater_id,
        experiment_id,
        now,
        bindparam("expires_at", type_=Lease.expires_at.type),
    ).where(bindparam("labels_count", type_=Integer()) + live_leases(pair_id) < bindparam("labels_wanted"))
    insert_lease = _upsert(postgres)(Lease).from_select(
        ["pair_id", "rater_id", "experiment_id", "created_at", "expires_at"], values
    )
    insert_lease = insert_lease.on_conflict_do_update(
        index_elements=["pair_id", "rater_id"],
        set_={"created_at": insert_lease.excluded.created_at, "expires_at": insert_lease.excluded.expires_at},
    ).returning(Lease.id)
    return {
        name: Prepared(statement)
        for name, statement in (("rater", rater), ("pick", pick), ("renew", renew), ("insert", insert_lease))
    }


async def lease_in(
    transaction: Transaction,
    *,
    experiment_id: int,
    rater_id: int,
    lease_seconds: float,
    max_held: int | None = None,
    exclude_pair_ids: Collection[int] = (),
) -> LeaseInfo | None:
    """The rater's next pair: one they hold already, else a new lease; None when nothing is waiting (run it with
    DatabaseRunner.transact, or lease_pair).

    A pair the rater holds (a live lease on a pending pair) comes first, oldest first, for a new lease term,
    unless it is in `exclude_pair_ids` (the pairs the caller shows already). Otherwise, while
    the rater holds fewer than `max_held` pairs (None: no cap), the highest-priority pair is leased, newest
    first among equals. A pair is offered while its labels plus live leases fall short of `labels_wanted`, and
    never to a rater who labeled it or holds it. On PostgreSQL the rater's row is locked first, so one rater's
    calls take turns, and candidates are locked with FOR UPDATE SKIP LOCKED and re-counted under the lock; on
    SQLite the whole transaction is BEGIN IMMEDIATE, so it runs alone. Three statements: the rater, the pair,
    the lease (a statement per step on PostgreSQL, each seeing what the lock before it let through).

    Raises:
        NotFound: no rater `rater_id`. Forbidden: the rater was revoked.
    """
    postgres = transaction.dialect.name == "postgresql"
    now = utcnow()
    expires_at = now + timedelta(seconds=lease_seconds)
    params: dict[str, Any] = {
        "experiment_id": experiment_id,
        "rater_id": rater_id,
        "now": now,
        "expires_at": expires_at,
        "exclude": list(exclude_pair_ids),
        "max_held": INT32_MAX if max_held is None else max_held,
    }
    active = await _lease_statements(postgres, False)["rater"].scalar(transaction, params)
    if active is None:
        raise NotFound("rater_id", f"no rater {rater_id}")
    if not active:
        raise Forbidden("authorization", "the rater's token was revoked")
    rejected: list[int] = []
    for _attempt in range(20):
        statements = _lease_statements(postgres, bool(rejected))
        pair = await statements["pick"].first(transaction, {**params, "rejected": rejected})
        if pair is None:
            return None
        lease_id = pair.lease_id
        if lease_id is not None:
            await statements["renew"].run(transaction, {**params, "lease_id": lease_id})
        else:
            lease_id = await statements["insert"].scalar(
                transaction,
                {
                    **params,
                    "pair_id": pair.id,
                    "labels_count": pair.labels_count,
                    "labels_wanted": pair.labels_wanted,
                },
            )
            if lease_id is None:  # filled up between the candidate query and the lock
                rejected.append(pair.id)
                continue
        return LeaseInfo(
            lease_id=lease_id,
            pair_id=pair.id,
            experiment_id=experiment_id,
            rater_id=rater_id,
            expires_at=as_utc(expires_at),
            left_segment_id=pair.left_segment_id,
            right_segment_id=pair.right_segment_id,
            left_clip_status=pair.left_clip_status,
            right_clip_status=pair.right_clip_status,
        )
    return None


lease_pair = blocking_twin(lease_in)


def release_lease_terms(session: Session, *, rater_id: int, terms: Mapping[int, datetime]) -> int:
    """Hand back, in one transaction, each of the rater's leases named in `terms` (lease id -> the expiry the
    page was given), where that term still runs: a term handed out since (to a reloaded page) stays. Returns
    how many were released.

    One transaction for all of a leaving page's pairs: a reloaded page that asks meanwhile then finds either
    all of them held (and gets the one it showed back first) or none (and gets the best again), never a mix.
    """
    if not terms:
        return 0
    with write_transaction(session):
        which = delete(Lease).where(
            Lease.rater_id == rater_id,
            or_(*(and_(Lease.id == lease, Lease.expires_at == expiry) for lease, expiry in terms.items())),
        )
        result: CursorResult[Any] = session.execute(which)  # type: ignore[assignment]
        return result.rowcount


def release_lease(
    session: Session,
    *,
    lease_id: int,
    rater_id: int | None = None,
    experiment_id: int | None = None,
) -> None:
    """Hand a leased pair back to the pool before it expires (the rater left or skipped ahead, or an admin
    freed a stuck one: no `rater_id`, within `experiment_id`). A page that left releases only the terms it was
    given: `release_lease_terms`."""
    with write_transaction(session):
        which = delete(Lease).where(Lease.id == lease_id)
        if rater_id is not None:
            which = which.where(Lease.rater_id == rater_id)
        if experiment_id is not None:
            which = which.where(Lease.experiment_id == experiment_id)
        result: CursorResult[Any] = session.execute(which)  # type: ignore[assignment]
        if result.rowcount == 0:
            whose = "held by this rater" if rater_id is not None else "in this experiment"
            raise NotFound("lease_id", f"no lease {lease_id} {whose}")

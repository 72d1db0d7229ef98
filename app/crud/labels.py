"""Labels: the one write path for humans and the synthetic teacher (`submit_label`), undo, export, import."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Executable,
    Integer,
    String,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.crud.common import as_utc, hash_token, new_token
from app.crud.experiments import get_experiment
from app.crud.pairs import LeaseInfo
from app.db import blocking_twin, is_sqlite, write_transaction
from app.driver import NeedsTransaction, Prepared, Transaction
from app.errors import Conflict, Forbidden, Invalid, NotFound
from app.models import (
    Label,
    Lease,
    Pair,
    Rater,
    Segment,
    utcnow,
)
from app.vocabulary import CHOICES


def _lock_pair(session: Session, *, pair_id: int) -> Pair:
    query = select(Pair).where(Pair.id == pair_id)
    if not is_sqlite(session):
        query = query.with_for_update()
    pair = session.scalar(query)
    if pair is None:
        raise NotFound("pair_id", f"no pair {pair_id}")
    return pair


# Built once, like the lease statements in app/crud/pairs.py: compiling ORM statements per request cost more
# than running them.
@functools.cache
def _label_statements(postgres: bool) -> dict[str, Any]:
    """The label path's statements, each a Prepared but "store" (the statements that store a label, in order)
    and "claim" (PostgreSQL's one-statement label, None elsewhere)."""
    pair_id, rater_id = bindparam("pair_id", type_=Integer()), bindparam("rater_id", type_=Integer())
    key = bindparam("key", type_=String())
    # Everything submit_label checks, in one statement: the pair, the rater's lease on it, whether the rater
    # labeled it, and the label already stored under the idempotency key. In a transaction on PostgreSQL the
    # pair is locked, so that labels and leases of one pair take turns until it commits ("locked_state"); a
    # statement on its own would hold the lock only while it runs, and pay a WAL flush for taking it.
    state = (
        select(
            Pair.experiment_id,
            Pair.status,
            Pair.labels_count,
            Pair.labels_wanted,
            Lease.id.label("lease_id"),
            Lease.expires_at.label("lease_expires_at"),
            select(Label.id)
            .where(Label.pair_id == pair_id, Label.rater_id == rater_id)
            .scalar_subquery()
            .label("labeled_id"),
            select(Label.id)
            .where(Label.rater_id == rater_id, Label.idempotency_key == key)
            .scalar_subquery()
            .label("key_label_id"),
        )
        .outerjoin(Lease, and_(Lease.pair_id == Pair.id, Lease.rater_id == rater_id))
        .where(Pair.id == pair_id)
    )
    # Storing the label: drop the rater's lease, insert the label, count it on the pair. On PostgreSQL one
    # statement that claims the lease: it inserts and counts only if its DELETE took the lease, so it is right
    # on its own, outside a transaction, and a request that lost the lease to another one stores nothing. SQLite
    # runs the three one by one, in-process, in its write transaction.
    stored_fields = ("experiment_id", "pair_id", "rater_id", "choice", "response_time_ms", "idempotency_key")
    new_values = {name: bindparam(f"new_{name}", type_=Label.__table__.c[name].type) for name in stored_fields}
    new_values["created_at"] = bindparam("new_created_at", type_=Label.created_at.type)
    insert_label = insert(Label).values(new_values).returning(Label.id)  # named binds: it may sit in a CTE
    drop_lease = delete(Lease).where(Lease.id == bindparam("lease_id", type_=Integer()))
    count_label = (
        update(Pair)
        .where(Pair.id == pair_id)
        .values(
            labels_count=Pair.labels_count + 1,
            status=case((Pair.labels_count + 1 >= Pair.labels_wanted, "complete"), else_=Pair.status),
        )
    )
    store: list[Executable]
    claim: Prepared | None = None
    if postgres:

        def claim_and_store(*lease: Any) -> Executable:
            """Deletes the lease, and only if that took it, inserts the label and counts it: (id, experiment_id)."""
            dropped = delete(Lease).where(*lease).returning(Lease.pair_id, Lease.experiment_id).cte("dropped")
            columns = {**new_values, "experiment_id": dropped.c.experiment_id}
            claimed = select(*columns.values()).select_from(dropped)
            stored = (
                insert(Label).from_select(list(columns), claimed).returning(Label.id, Label.experiment_id)
            ).cte("stored")
            counted = count_label.where(Pair.id.in_(select(dropped.c.pair_id))).cte("counted")
            return select(stored.c.id, stored.c.experiment_id).add_cte(counted)

        store = [claim_and_store(Lease.id == bindparam("lease_id", type_=Integer()))]
        # Tried before the checks: a label on a live lease, under a pair and key the rater has not used, is
        # stored in one statement (one round trip); anything else stores nothing, and the checks say why.
        claim = Prepared(
            claim_and_store(
                Lease.pair_id == pair_id,
                Lease.rater_id == rater_id,
                Lease.expires_at > bindparam("now", type_=Lease.expires_at.type),
                ~exists().where(
                    Label.rater_id == rater_id, or_(Label.pair_id == pair_id, Label.idempotency_key == key)
                ),
            )
        )
    else:
        store = [insert_label, drop_lease, count_label]
    checks = Prepared(state)
    return {
        "claim": claim,
        "state": checks,
        "locked_state": Prepared(state.with_for_update(of=Pair)) if postgres else checks,
        "label": Prepared(select(*Label.__table__.columns).where(Label.id == bindparam("label_id"))),
        "others_live": Prepared(
            select(func.count())
            .select_from(Lease)
            .where(Lease.pair_id == pair_id, Lease.rater_id != rater_id, Lease.expires_at > bindparam("now"))
        ),
        "store": [Prepared(statement) for statement in store],
    }


async def label_in(
    transaction: Transaction,
    *,
    rater_id: int,
    pair_id: int,
    choice: str,
    response_time_ms: int | None = None,
    idempotency_key: str | None = None,
) -> tuple[Label, bool]:
    """Store a rater's answer about a leased pair; the one write path for humans and the synthetic teacher (run
    it with DatabaseRunner.write or transact, or submit_label).

    Idempotent: a repeated `idempotency_key` with the same pair and choice returns the stored label. When a
    concurrent request of the same rater for the same key or pair gets in between this one's checks and its
    write, the write stores nothing (on PostgreSQL its claim of the lease finds the lease gone; elsewhere the
    insert raises IntegrityError and the runners ask once more), and the checks asked again see that request's
    label: the same key and body get it back, anything else a conflict. On PostgreSQL a request that waited for
    the pair's row lock reads the rest from before the wait, which is why the checks are asked again.

    On PostgreSQL the usual label (a live lease, a key not used before) is one statement, the claim, which
    needs no transaction (DatabaseRunner.write); only when it stores nothing do the checks run, to say why. A late
    label asks for a transaction (NeedsTransaction).

    Returns:
        (label, created): created is False for a replay. The label is detached from any session.
    """
    if choice not in CHOICES:
        raise Invalid("choice", f"must be one of {', '.join(CHOICES)}")
    for _attempt in range(2):
        answer = await _label_once(transaction, rater_id, pair_id, choice, response_time_ms, idempotency_key)
        if answer is not None:
            return answer
    raise Conflict("pair_id", "the rater does not hold a lease on this pair")


async def _label_once(
    transaction: Transaction,
    rater_id: int,
    pair_id: int,
    choice: str,
    response_time_ms: int | None,
    idempotency_key: str | None,
) -> tuple[Label, bool] | None:
    """label_in's checks and write; None when the write found the rater's lease gone since the checks."""
    statements = _label_statements(transaction.dialect.name == "postgresql")
    keys = {"pair_id": pair_id, "rater_id": rater_id}
    now = utcnow()
    values = {
        "pair_id": pair_id,
        "rater_id": rater_id,
        "choice": choice,
        "response_time_ms": response_time_ms,
        "idempotency_key": idempotency_key,
        "created_at": now,
    }
    new_values = {f"new_{name}": value for name, value in values.items()}
    if statements["claim"] is not None:
        claim_params = {**new_values, **keys, "key": idempotency_key, "now": now}
        stored = await statements["claim"].first(transaction, claim_params)
        if stored is not None:
            return Label(id=stored.id, experiment_id=stored.experiment_id, **values), True
    checks = statements["locked_state" if transaction.atomic else "state"]
    state = await checks.first(transaction, {**keys, "key": idempotency_key})
    if state is None:
        raise NotFound("pair_id", f"no pair {pair_id}")
    if state.key_label_id is not None:
        earlier = await statements["label"].first(transaction, {"label_id": state.key_label_id})
        if earlier.pair_id != pair_id or earlier.choice != choice:
            raise Conflict("idempotency_key", "already used for a different label")
        return Label(**earlier._asdict()), False
    if state.labeled_id is not None:
        raise Conflict("pair_id", "this rater already labeled the pair")
    if state.lease_id is None:
        raise Conflict("pair_id", "the rater does not hold a lease on this pair")
    if as_utc(state.lease_expires_at) <= now:
        if not transaction.atomic:
            raise NeedsTransaction  # the pair's other leases must not change between this count and the insert
        # Late but harmless if nobody else took the place meanwhile.
        others = await statements["others_live"].scalar(transaction, {**keys, "now": now}) or 0
        if state.status != "pending" or state.labels_count + others >= state.labels_wanted:
            raise Conflict("pair_id", "the lease expired and the pair went to another rater")
    first, *rest = statements["store"]
    ids = {"lease_id": state.lease_id, "pair_id": pair_id}
    label_id = await first.scalar(transaction, {**new_values, "new_experiment_id": state.experiment_id, **ids})
    for statement in rest:
        await statement.run(transaction, ids)
    return None if label_id is None else (Label(id=label_id, experiment_id=state.experiment_id, **values), True)


submit_label = blocking_twin(label_in)


def _count_label(session: Session, *, pair: Pair, delta: int) -> None:
    pair.labels_count += delta
    if pair.status != "cancelled":
        pair.status = "complete" if pair.labels_count >= pair.labels_wanted else "pending"


def undo_last_label(
    session: Session, *, experiment_id: int, rater_id: int, lease_seconds: float
) -> tuple[Label, LeaseInfo]:
    """Delete the rater's latest label in the experiment and lease its pair back to them."""
    with write_transaction(session):
        # Locked like lease_pair does, so that a revocation in flight releases the lease made here too.
        if not session.scalar(select(Rater.active).where(Rater.id == rater_id).with_for_update(key_share=True)):
            raise Forbidden("authorization", "the rater's token was revoked")
        label = session.scalar(
            select(Label)
            .where(Label.experiment_id == experiment_id, Label.rater_id == rater_id)
            .order_by(Label.id.desc())
            .limit(1)
        )
        if label is None:
            raise NotFound("label", "this rater has no label to undo in the experiment")
        pair = _lock_pair(session, pair_id=label.pair_id)
        session.delete(label)
        _count_label(session, pair=pair, delta=-1)
        session.execute(delete(Lease).where(Lease.pair_id == pair.id, Lease.rater_id == rater_id))
        now = utcnow()
        lease = Lease(
            pair_id=pair.id,
            rater_id=rater_id,
            experiment_id=experiment_id,
            created_at=now,
            expires_at=now + timedelta(seconds=lease_seconds),
        )
        session.add(lease)
        session.flush()
        info = _lease_info(session, lease=lease, pair=pair)
    return label, info


def _lease_info(session: Session, *, lease: Lease, pair: Pair) -> LeaseInfo:
    statuses = dict(
        session.execute(
            select(Segment.id, Segment.clip_status).where(Segment.id.in_([pair.left_segment_id, pair.right_segment_id]))
        ).all()
    )
    return LeaseInfo(
        lease_id=lease.id,
        pair_id=pair.id,
        experiment_id=lease.experiment_id,
        rater_id=lease.rater_id,
        expires_at=as_utc(lease.expires_at),
        left_segment_id=pair.left_segment_id,
        right_segment_id=pair.right_segment_id,
        left_clip_status=statuses[pair.left_segment_id],
        right_clip_status=statuses[pair.right_segment_id],
    )


def labels_after(session: Session, *, experiment_id: int, after_id: int = 0, limit: int = 10_000) -> list[Label]:
    """Labels with id > after_id, oldest first: the worker trains on everything so far by paging this."""
    return list(
        session.scalars(
            select(Label)
            .where(Label.experiment_id == experiment_id, Label.id > after_id)
            .order_by(Label.id)
            .limit(limit)
        )
    )


EXPORT_FIELDS = (
    "label_id",
    "experiment_id",
    "pair_id",
    "left_segment_id",
    "right_segment_id",
    "rater_id",
    "rater_name",
    "choice",
    "response_time_ms",
    "created_at",
    "idempotency_key",
)


def iter_label_records(session: Session, *, experiment_id: int, batch_size: int = 1000) -> Iterator[dict[str, Any]]:
    """Every label of the experiment as an export record, in id order, read in keyset-paged batches."""
    after_id = 0
    while True:
        rows = session.execute(
            select(Label, Pair.left_segment_id, Pair.right_segment_id, Rater.name)
            .join(Pair, Pair.id == Label.pair_id)
            .join(Rater, Rater.id == Label.rater_id)
            .where(Label.experiment_id == experiment_id, Label.id > after_id)
            .order_by(Label.id)
            .limit(batch_size)
        ).all()
        if not rows:
            return
        for label, left_id, right_id, rater_name in rows:
            yield {
                "label_id": label.id,
                "experiment_id": label.experiment_id,
                "pair_id": label.pair_id,
                "left_segment_id": left_id,
                "right_segment_id": right_id,
                "rater_id": label.rater_id,
                "rater_name": rater_name,
                "choice": label.choice,
                "response_time_ms": label.response_time_ms,
                "created_at": as_utc(label.created_at).isoformat(),
                "idempotency_key": label.idempotency_key,
            }
        after_id = rows[-1][0].id
        session.rollback()  # end the read transaction between pages so long exports hold no snapshot


@dataclass(frozen=True)
class ImportedLabel:
    """One validated line of a JSONL import (see schemas.LabelImport)."""

    line: int
    pair_id: int
    choice: str
    rater_id: int | None
    rater_name: str | None
    response_time_ms: int | None
    created_at: datetime | None
    idempotency_key: str | None


def import_labels(session: Session, *, experiment_id: int, records: Iterable[ImportedLabel]) -> int:
    """Store labels from an export (no leases needed); all or nothing. Identical re-imports are skipped.

    Returns:
        The number of labels stored.
    """
    get_experiment(session, experiment_id=experiment_id)
    records = list(records)
    imported = 0
    with write_transaction(session):
        raters_by_name: dict[str, int] = {}
        for record in records:
            where = f"line {record.line}"
            pair = _lock_pair_or_none(session, pair_id=record.pair_id)
            if pair is None or pair.experiment_id != experiment_id:
                raise NotFound(f"{where}.pair_id", f"no pair {record.pair_id} in experiment {experiment_id}")
            rater_id = record.rater_id
            if rater_id is not None:
                if session.get(Rater, rater_id) is None:
                    raise NotFound(f"{where}.rater_id", f"no rater {rater_id}")
            else:
                assert record.rater_name is not None
                rater_id = raters_by_name.get(record.rater_name) or _rater_id_by_name(session, name=record.rater_name)
                raters_by_name[record.rater_name] = rater_id
            existing = session.scalar(select(Label).where(Label.pair_id == pair.id, Label.rater_id == rater_id))
            if existing is not None:
                if existing.choice != record.choice:
                    raise Conflict(f"{where}.choice", f"rater {rater_id} already gave pair {pair.id} another answer")
                continue
            session.add(
                Label(
                    experiment_id=experiment_id,
                    pair_id=pair.id,
                    rater_id=rater_id,
                    choice=record.choice,
                    response_time_ms=record.response_time_ms,
                    idempotency_key=record.idempotency_key,
                    created_at=record.created_at or utcnow(),
                )
            )
            _count_label(session, pair=pair, delta=+1)
            try:
                session.flush()
            except IntegrityError as error:
                raise Conflict(f"{where}.idempotency_key", "already used by this rater") from error
            imported += 1
    return imported


def _lock_pair_or_none(session: Session, *, pair_id: int) -> Pair | None:
    try:
        return _lock_pair(session, pair_id=pair_id)
    except NotFound:
        return None


def _rater_id_by_name(session: Session, *, name: str) -> int:
    rater_id = session.scalar(select(Rater.id).where(Rater.name == name).order_by(Rater.id).limit(1))
    if rater_id is None:
        rater = Rater(name=name, kind="human", token_hash=hash_token(new_token()), active=True)
        session.add(rater)
        session.flush()
        rater_id = rater.id
    return rater_id

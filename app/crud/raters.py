"""Raters and invites: create, invite, look up by token; the synthetic teacher's rater; the admin token."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.orm import Session

from app.crud.common import hash_token, new_token
from app.crud.experiments import get_experiment
from app.db import read_in_session, write_transaction
from app.driver import Prepared, Transaction
from app.errors import NotFound
from app.models import (
    AppSecret,
    Experiment,
    Lease,
    Rater,
    RaterExperiment,
)
from app.vocabulary import RaterKind

ADMIN_TOKEN_SECRET = "admin_token"


def create_rater(
    session: Session, *, experiment_ids: Sequence[int] = (), name: str, kind: RaterKind = "human"
) -> tuple[Rater, str]:
    """Create a rater invited to `experiment_ids`; returns it and its token (shown once, stored hashed)."""
    for i, experiment_id in enumerate(experiment_ids):
        if session.get(Experiment, experiment_id) is None:
            raise NotFound(f"experiment_ids[{i}]", f"no experiment {experiment_id}")
    token = new_token()
    with write_transaction(session):
        rater = Rater(name=name, kind=kind, token_hash=hash_token(token), active=True)
        session.add(rater)
        session.flush()
        session.add_all(RaterExperiment(rater_id=rater.id, experiment_id=e) for e in dict.fromkeys(experiment_ids))
    return rater, token


def invite_rater(session: Session, *, experiment_id: int, rater_id: int) -> None:
    """Let an existing rater label another experiment (no-op if already invited)."""
    get_experiment(session, experiment_id=experiment_id)
    with write_transaction(session):
        if session.get(Rater, rater_id) is None:
            raise NotFound("rater_id", f"no rater {rater_id}")
        if session.get(RaterExperiment, (rater_id, experiment_id)) is None:
            session.add(RaterExperiment(rater_id=rater_id, experiment_id=experiment_id))


def revoke_rater(session: Session, *, rater_id: int) -> Rater:
    """Revoke a rater's token: it signs in no more and leases nothing; the rater's labels stay, and the pairs
    they hold go back to the queue at once. Revoking twice is harmless."""
    with write_transaction(session):
        # The update waits for the rater's lease calls in flight (they lock the row); the delete that follows
        # sees the leases they committed.
        changed = session.execute(update(Rater).where(Rater.id == rater_id).values(active=False))
        if changed.rowcount == 0:  # type: ignore[attr-defined]
            raise NotFound("rater_id", f"no rater {rater_id}")
        session.execute(delete(Lease).where(Lease.rater_id == rater_id))
        rater = session.get_one(Rater, rater_id, populate_existing=True)
    return rater


def rater_for_token(session: Session, *, token: str) -> Rater | None:
    """The active rater a bearer token belongs to, or None."""
    return session.scalar(select(Rater).where(Rater.token_hash == hash_token(token), Rater.active.is_(True)))


# The two reads of a rater request whose answers the auth cache keeps: on the driver (app.driver), so a cache miss
# on a hot path runs on the event loop too (on a thread it held the event loop off for milliseconds at a time).
_RATER_FOR_TOKEN = Prepared(
    select(Rater.id).where(Rater.token_hash == bindparam("token_hash"), Rater.active.is_(True))
)
_INVITED = Prepared(
    select(RaterExperiment.rater_id).where(
        RaterExperiment.rater_id == bindparam("rater_id"), RaterExperiment.experiment_id == bindparam("experiment_id")
    )
)


async def rater_for_token_in(transaction: Transaction, *, token: str) -> int | None:
    """The id of the active rater a bearer token belongs to, or None."""
    return await _RATER_FOR_TOKEN.scalar(transaction, {"token_hash": hash_token(token)})  # type: ignore[no-any-return]


async def invited_in(transaction: Transaction, *, experiment_id: int, rater_id: int) -> bool:
    return await _INVITED.scalar(transaction, {"rater_id": rater_id, "experiment_id": experiment_id}) is not None


def rater_id_for_token(session: Session, *, token: str) -> int | None:
    """rater_for_token_in on the session's connection."""
    return read_in_session(session, rater_for_token_in, token=token)


def is_invited(session: Session, *, experiment_id: int, rater_id: int) -> bool:
    """invited_in on the session's connection."""
    return read_in_session(session, invited_in, experiment_id=experiment_id, rater_id=rater_id)


def rater_experiment_ids(session: Session, *, rater_id: int) -> list[int]:
    return list(
        session.scalars(
            select(RaterExperiment.experiment_id)
            .where(RaterExperiment.rater_id == rater_id)
            .order_by(RaterExperiment.experiment_id)
        )
    )


def list_raters(session: Session, *, experiment_id: int | None = None) -> list[Rater]:
    query = select(Rater).order_by(Rater.id)
    if experiment_id is not None:
        query = query.join(RaterExperiment).where(RaterExperiment.experiment_id == experiment_id)
    return list(session.scalars(query))


def oracle_rater_id(session: Session, *, experiment_id: int) -> int:
    """The experiment's synthetic-teacher rater (kind "oracle"), created on first use."""
    query = (
        select(Rater.id)
        .join(RaterExperiment, RaterExperiment.rater_id == Rater.id)
        .where(RaterExperiment.experiment_id == experiment_id, Rater.kind == "oracle")
        .order_by(Rater.id)
        .limit(1)
    )
    rater_id = session.scalar(query)
    if rater_id is None:
        rater, _token = create_rater(
            session, name=f"oracle-{experiment_id}", experiment_ids=[experiment_id], kind="oracle"
        )
        rater_id = rater.id
    return rater_id


def ensure_admin_token(session: Session, *, configured: str | None) -> tuple[str, str | None]:
    """The admin token's hash, creating and storing a token at first start when none is configured.

    Returns:
        (hash to check requests against, the new plaintext token if one was generated just now, else None).
    """
    if configured:
        return hash_token(configured), None
    stored = session.get(AppSecret, ADMIN_TOKEN_SECRET)
    if stored is not None:
        value_hash = stored.value_hash
        session.rollback()
        return value_hash, None
    token = new_token()
    with write_transaction(session):
        if session.get(AppSecret, ADMIN_TOKEN_SECRET) is not None:  # another process won the race
            return session.get(AppSecret, ADMIN_TOKEN_SECRET).value_hash, None  # type: ignore[union-attr]
        session.add(AppSecret(name=ADMIN_TOKEN_SECRET, value_hash=hash_token(token)))
    return hash_token(token), token

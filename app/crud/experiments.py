"""Experiments: create, read, count, change, and the worker's ownership of one."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from app.crud.common import get_or_not_found
from app.db import write_transaction
from app.errors import Conflict, Invalid
from app.models import (
    Experiment,
    Label,
    Pair,
    RaterExperiment,
    Segment,
    utcnow,
)
from app.schemas import ExperimentCreate


def create_experiment(session: Session, *, data: ExperimentCreate) -> Experiment:
    """Store a new experiment; the name must be unused."""
    if data.num_actions is not None and data.action_dtype != "int64":
        raise Invalid("num_actions", "only discrete (int64) action spaces have num_actions")
    if data.action_dtype == "int64" and data.num_actions is None:
        raise Invalid("num_actions", "required for discrete (int64) actions")
    with write_transaction(session):
        if session.scalar(select(Experiment.id).where(Experiment.name == data.name)) is not None:
            raise Conflict("name", f"an experiment named {data.name!r} exists")
        experiment = Experiment(**data.model_dump())
        session.add(experiment)
    return experiment


def get_experiment(session: Session, *, experiment_id: int) -> Experiment:
    return get_or_not_found(session, model=Experiment, row_id=experiment_id, noun="experiment")


def list_experiments(session: Session, *, rater_id: int | None = None) -> list[Experiment]:
    """All experiments, or those `rater_id` was invited to."""
    query = select(Experiment).order_by(Experiment.id)
    if rater_id is not None:
        query = query.join(RaterExperiment, RaterExperiment.experiment_id == Experiment.id).where(
            RaterExperiment.rater_id == rater_id
        )
    return list(session.scalars(query))


def experiment_counts(session: Session, *, experiment_id: int) -> dict[str, int]:
    """Segments, pending and complete pairs, labels and invited raters of an experiment."""
    pair_counts = dict(
        session.execute(
            select(Pair.status, func.count()).where(Pair.experiment_id == experiment_id).group_by(Pair.status)
        ).all()
    )
    return {
        "segments": session.scalar(select(func.count()).where(Segment.experiment_id == experiment_id)) or 0,
        "pairs_pending": pair_counts.get("pending", 0),
        "pairs_complete": pair_counts.get("complete", 0),
        "labels": session.scalar(select(func.count()).where(Label.experiment_id == experiment_id)) or 0,
        "raters": session.scalar(select(func.count()).where(RaterExperiment.experiment_id == experiment_id)) or 0,
    }


def update_experiment(session: Session, *, experiment_id: int, changes: dict[str, Any]) -> Experiment:
    """Change mode, instructions, status, budgets or config; a mode switch applies from the next pair leased.

    The API's update schema has no `config` or `error`: only the worker writes them, to store the run's resolved
    settings and why it could not run the experiment. A status other than "failed" clears the error, so an
    experiment set back to "created" (its env fixed) is tried again with a clean page.
    """
    allowed = {
        "config",
        "error",
        "teacher_mode",
        "instructions",
        "status",
        "label_budget",
        "timestep_budget",
        "human_timeout_seconds",
    }
    unknown = set(changes) - allowed
    if unknown:
        raise Invalid(sorted(unknown)[0], "cannot be changed")
    with write_transaction(session):
        experiment = get_experiment(session, experiment_id=experiment_id)
        for name, value in changes.items():
            setattr(experiment, name, value)
        if changes.get("status", "failed") != "failed":
            experiment.error = None
        experiment.updated_at = utcnow()
    return experiment


def acquire_experiment(session: Session, *, experiment_id: int, worker_id: str, lease_seconds: float) -> bool:
    """Take or renew a worker's ownership of an experiment; False while another worker's lease is live."""
    with write_transaction(session):
        now = utcnow()
        result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
            update(Experiment)
            .where(
                Experiment.id == experiment_id,
                (Experiment.owner_worker.is_(None))
                | (Experiment.owner_worker == worker_id)
                | (Experiment.owner_expires_at < now),
            )
            .values(owner_worker=worker_id, owner_expires_at=now + timedelta(seconds=lease_seconds))
        )
        if result.rowcount == 0:
            get_experiment(session, experiment_id=experiment_id)  # unknown id → NotFound rather than False
            return False
        return True


def release_experiment(session: Session, *, experiment_id: int, worker_id: str) -> None:
    """Give up ownership (on clean shutdown) so another worker can start at once."""
    with write_transaction(session):
        session.execute(
            update(Experiment)
            .where(Experiment.id == experiment_id, Experiment.owner_worker == worker_id)
            .values(owner_worker=None, owner_expires_at=None)
        )


def experiments_needing_work(session: Session, *, now: datetime | None = None) -> list[Experiment]:
    """Worker-run experiments (config has "run") not done or paused whose owner lease is free or expired."""
    now = now or utcnow()
    query = (
        select(Experiment)
        .where(
            Experiment.status.in_(("created", "running")),
            Experiment.owner_worker.is_(None) | (Experiment.owner_expires_at < now),
        )
        .order_by(Experiment.id)
    )
    return [e for e in session.scalars(query) if isinstance(e.config, dict) and "run" in e.config]

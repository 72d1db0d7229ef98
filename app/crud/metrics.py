"""Metric series and checkpoints the worker records."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from app.crud.experiments import get_experiment
from app.db import write_transaction
from app.errors import Invalid
from app.models import (
    Checkpoint,
    MetricPoint,
    utcnow,
)


def record_metrics(session: Session, *, experiment_id: int, step: int, values: dict[str, float]) -> None:
    """Append one point per key (namespaced like `reward/val_accuracy`) at `step`."""
    bad = [key for key, value in values.items() if not np.isfinite(value)]
    if bad:
        raise Invalid(f"values.{bad[0]}", "must be a finite number")
    get_experiment(session, experiment_id=experiment_id)
    with write_transaction(session):
        now = utcnow()
        session.add_all(
            MetricPoint(experiment_id=experiment_id, key=key, step=step, value=float(value), created_at=now)
            for key, value in values.items()
        )


def metric_series(
    session: Session, *, experiment_id: int, keys: Sequence[str] | None = None, after_step: int | None = None
) -> dict[str, list[tuple[int, float]]]:
    """Series by key, as (step, value) in step order; `after_step` gives only newer points (live plots)."""
    query = select(MetricPoint.key, MetricPoint.step, MetricPoint.value).where(
        MetricPoint.experiment_id == experiment_id
    )
    if keys:
        query = query.where(MetricPoint.key.in_(keys))
    if after_step is not None:
        query = query.where(MetricPoint.step > after_step)
    series: dict[str, list[tuple[int, float]]] = {}
    for key, step, value in session.execute(query.order_by(MetricPoint.key, MetricPoint.step, MetricPoint.id)):
        series.setdefault(key, []).append((step, value))
    return series


def latest_metrics(session: Session, *, experiment_id: int) -> dict[str, tuple[int, float]]:
    """The newest point of every series of the experiment."""
    newest = (
        select(MetricPoint.key, func.max(MetricPoint.id).label("id"))
        .where(MetricPoint.experiment_id == experiment_id)
        .group_by(MetricPoint.key)
        .subquery()
    )
    rows = session.execute(
        select(MetricPoint.key, MetricPoint.step, MetricPoint.value).join(newest, and_(newest.c.id == MetricPoint.id))
    )
    return {key: (step, value) for key, step, value in rows}


def add_checkpoint(
    session: Session,
    *,
    experiment_id: int,
    step: int,
    path: str,
    labels_used: int = 0,
    meta: dict[str, Any] | None = None,
) -> Checkpoint:
    """Record a checkpoint file the worker wrote (write the file first, then call this)."""
    get_experiment(session, experiment_id=experiment_id)
    with write_transaction(session):
        checkpoint = Checkpoint(
            experiment_id=experiment_id, step=step, path=path, labels_used=labels_used, meta=meta or {}
        )
        session.add(checkpoint)
    return checkpoint


def latest_checkpoint(session: Session, *, experiment_id: int) -> Checkpoint | None:
    return session.scalar(
        select(Checkpoint)
        .where(Checkpoint.experiment_id == experiment_id)
        .order_by(Checkpoint.step.desc(), Checkpoint.id.desc())
        .limit(1)
    )

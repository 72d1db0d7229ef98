"""Jobs for the worker: queue, claim (never twice at once), heartbeat, complete or fail."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from app.crud.common import get_or_not_found
from app.db import is_sqlite, write_transaction
from app.models import (
    Job,
    utcnow,
)

RENDER_CLIP_JOB = "render_clip"


def enqueue_job(
    session: Session, *, experiment_id: int | None = None, kind: str, payload: dict[str, Any], priority: int = 0
) -> Job:
    with write_transaction(session):
        job = Job(kind=kind, payload=payload, experiment_id=experiment_id, priority=priority)
        session.add(job)
    return job


def get_job(session: Session, *, job_id: int) -> Job:
    return get_or_not_found(session, model=Job, row_id=job_id, noun="job")


def claim_jobs(
    session: Session, *, worker_id: str, kinds: Sequence[str], limit: int = 1, lease_seconds: float = 300.0
) -> list[Job]:
    """Claim up to `limit` queued jobs (or running ones whose claim expired) for `worker_id`.

    PostgreSQL: FOR UPDATE SKIP LOCKED, so concurrent workers never claim the same job; SQLite: BEGIN
    IMMEDIATE. Finish each with `complete_job` / `fail_job`; renew long ones with `heartbeat_job`.
    """
    with write_transaction(session):
        now = utcnow()
        query = (
            select(Job)
            .where(
                Job.kind.in_(kinds),
                (Job.status == "queued") | ((Job.status == "running") & (Job.lease_expires_at < now)),
            )
            .order_by(Job.priority.desc(), Job.id)
            .limit(limit)
        )
        if not is_sqlite(session):
            query = query.with_for_update(skip_locked=True)
        jobs = list(session.scalars(query))
        for job in jobs:
            job.status = "running"
            job.claimed_by = worker_id
            job.attempts += 1
            job.lease_expires_at = now + timedelta(seconds=lease_seconds)
    return jobs


def heartbeat_job(session: Session, *, worker_id: str, job_id: int, lease_seconds: float = 300.0) -> bool:
    """Extend a claim; False if the job is no longer this worker's (it expired and was taken over)."""
    with write_transaction(session):
        result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
            update(Job)
            .where(Job.id == job_id, Job.claimed_by == worker_id, Job.status == "running")
            .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
        )
        return result.rowcount == 1


def complete_job(session: Session, *, worker_id: str, job_id: int, result: dict[str, Any] | None = None) -> bool:
    """Mark a claimed job done; False if another worker holds it now."""
    with write_transaction(session):
        outcome: CursorResult[Any] = session.execute(  # type: ignore[assignment]
            update(Job)
            .where(Job.id == job_id, Job.claimed_by == worker_id, Job.status == "running")
            .values(status="done", result=result, finished_at=utcnow(), lease_expires_at=None)
        )
        return outcome.rowcount == 1


def fail_job(session: Session, *, worker_id: str, job_id: int, error: str) -> bool:
    """Record a failure; the job is queued again until it has used `max_attempts`."""
    with write_transaction(session):
        job = session.get(Job, job_id)
        if job is None or job.claimed_by != worker_id or job.status != "running":
            return False
        job.error = error[-4000:]
        job.lease_expires_at = None
        if job.attempts >= job.max_attempts:
            job.status = "failed"
            job.finished_at = utcnow()
        else:
            job.status = "queued"
        return True

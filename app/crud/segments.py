"""Segments and their clips: store (validated by `app.crud.arrays`), list, and queue or record clips."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.crud.arrays import validate_segment
from app.crud.common import get_or_not_found
from app.crud.experiments import get_experiment
from app.crud.jobs import RENDER_CLIP_JOB
from app.db import write_transaction
from app.errors import Invalid
from app.models import (
    Clip,
    Job,
    Segment,
)
from app.schemas import SegmentIn


def add_segments(session: Session, *, experiment_id: int, segments: Sequence[SegmentIn]) -> tuple[list[int], list[int]]:
    """Validate and store segments; queue a worker render job for each with a render spec.

    Returns:
        (segment ids, render job ids). Nothing is stored if any segment is invalid.
    """
    experiment = get_experiment(session, experiment_id=experiment_id)
    checked = [validate_segment(experiment, segment, f"segments[{i}]") for i, segment in enumerate(segments)]
    with write_transaction(session):
        rows = []
        for incoming, arrays in zip(segments, checked, strict=True):
            known_rewards = incoming.true_rewards is not None
            render_spec = None
            if incoming.render is not None:
                render_spec = incoming.render.model_dump()
                render_spec["env_id"] = render_spec["env_id"] or incoming.env_id or experiment.env_id
            row = Segment(
                experiment_id=experiment_id,
                length=int(arrays.obs.shape[0]),
                obs=arrays.obs.tobytes(),
                obs_shape=list(arrays.obs.shape),
                obs_dtype=str(arrays.obs.dtype),
                actions=arrays.actions.tobytes(),
                actions_shape=list(arrays.actions.shape),
                actions_dtype=str(arrays.actions.dtype),
                true_rewards=arrays.true_rewards.tobytes() if known_rewards else None,
                true_return=float(arrays.true_rewards.sum()) if known_rewards else None,
                ended=arrays.ended.tobytes(),
                env_id=incoming.env_id or experiment.env_id,
                seed=incoming.seed
                if incoming.seed is not None
                else (incoming.render.seed if incoming.render else None),
                render_spec=render_spec,
                policy_step=incoming.policy_step,
                clip_status="queued" if render_spec else "none",
            )
            session.add(row)
            rows.append(row)
        session.flush()
        job_ids = []
        for row in rows:
            if row.render_spec is not None:
                job = Job(kind=RENDER_CLIP_JOB, experiment_id=experiment_id, payload={"segment_id": row.id})
                session.add(job)
                session.flush()
                job_ids.append(job.id)
    return [row.id for row in rows], job_ids


def get_segment(session: Session, *, segment_id: int) -> Segment:
    return get_or_not_found(session, model=Segment, row_id=segment_id, noun="segment")


def list_segments(session: Session, *, experiment_id: int, after_id: int = 0, limit: int = 1000) -> list[Segment]:
    """Segments of an experiment with id > after_id, oldest first (for the worker's pair chooser)."""
    return list(
        session.scalars(
            select(Segment)
            .where(Segment.experiment_id == experiment_id, Segment.id > after_id)
            .order_by(Segment.id)
            .limit(limit)
        )
    )


def queue_uploaded_frames(session: Session, *, segment_id: int, frames: np.ndarray, fps: int, upload_dir: Path) -> Job:
    """Keep frames a client sent, (T, H, W, 3) uint8, and queue a job that encodes them into the clip."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise Invalid("frames", f"must be a (T, H, W, 3) uint8 array, got {frames.dtype} {list(frames.shape)}")
    if frames.shape[1] < 2 or frames.shape[2] < 2:
        raise Invalid("frames", "frames must be at least 2×2 pixels")
    segment = get_segment(session, segment_id=segment_id)
    upload_dir.mkdir(parents=True, exist_ok=True)
    path = upload_dir / f"segment-{segment.id}-{secrets.token_hex(6)}.npy"
    np.save(path, frames)
    with write_transaction(session):
        job = Job(
            kind=RENDER_CLIP_JOB,
            experiment_id=segment.experiment_id,
            payload={"segment_id": segment_id, "frames_path": str(path.resolve()), "fps": fps},
        )
        session.add(job)
        session.execute(update(Segment).where(Segment.id == segment_id).values(clip_status="queued"))
    return job


def get_clip(session: Session, *, content_hash: str) -> Clip | None:
    return session.get(Clip, content_hash)


def attach_clip(session: Session, *, segment_id: int, clip: dict[str, Any]) -> None:
    """Record an encoded clip (once per content hash) and point the segment at it."""
    with write_transaction(session):
        if session.get(Clip, clip["content_hash"]) is None:
            session.add(Clip(**clip))
            session.flush()
        session.execute(
            update(Segment).where(Segment.id == segment_id).values(clip_hash=clip["content_hash"], clip_status="ready")
        )


def mark_clip_failed(session: Session, *, segment_id: int) -> None:
    with write_transaction(session):
        session.execute(update(Segment).where(Segment.id == segment_id).values(clip_status="failed"))


def queue_segment_clips(session: Session, *, experiment_id: int, segment_ids: Sequence[int]) -> list[int]:
    """Queue a render job per segment that the worker renders from the segment's own observations.

    For segments stored without a render spec (the worker's own rollouts): the clip job restores the env
    state from each observation. Returns the job ids.
    """
    with write_transaction(session):
        jobs = [
            Job(kind=RENDER_CLIP_JOB, experiment_id=experiment_id, payload={"segment_id": i, "from_obs": True})
            for i in segment_ids
        ]
        session.add_all(jobs)
        session.execute(update(Segment).where(Segment.id.in_(segment_ids)).values(clip_status="queued"))
    return [job.id for job in jobs]


def count_clips_queued(session: Session, *, segment_ids: Sequence[int]) -> int:
    """How many of these segments still wait for their clip (neither ready nor failed)."""
    query = select(func.count()).where(Segment.id.in_(segment_ids), Segment.clip_status == "queued")
    return session.scalar(query) or 0

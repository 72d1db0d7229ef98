"""`ExperimentStore` on the data service: database rows ↔ worker types, through `app.crud`.

The only worker module that imports `app` (besides the CLI that starts the server). Every write goes through
the same crud functions and validation as the API: the oracle's labels through `crud.submit_label`, like a
human's. Reads of state other processes change (mode, pairs, labels, clips) end the session's read
transaction first, so they see the latest commits.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from app import crud
from app.db import make_engine, make_session_factory
from app.errors import Conflict
from app.models import Pair as PairRow
from app.schemas import PairIn, RenderSpec, SegmentIn
from app.settings import Settings
from worker.envs import realtime_fps
from worker.store import (
    CheckpointRecord,
    ClipInfo,
    ExperimentInfo,
    LabelRefused,
    PairLease,
    RenderJob,
    StoredLabel,
    StoredPair,
)
from worker.types import Choice, Segment


def segment_in(segment: Segment, policy_step: int) -> SegmentIn:
    """A worker segment as the data layer's input (float32 → JSON float → float32 is exact).

    A segment with a MuJoCo start state gets a render spec, so its clip is queued with it: the replay from that
    state with the segment's own actions (float64 → JSON → float64 is exact too).
    """
    render = None
    if segment.start_state is not None:
        render = RenderSpec(
            env_id=segment.env_id or None,
            seed=0,
            start_state=segment.start_state.tolist(),
            fps=realtime_fps(segment.env_id) if segment.env_id else 30,
        )
    return SegmentIn(
        obs=segment.obs.tolist(),
        actions=segment.actions.tolist(),
        true_rewards=segment.true_rewards.tolist(),
        ended=segment.ended.tolist(),
        env_id=segment.env_id or None,
        policy_step=policy_step,
        render=render,
    )


def stored_pair(row: PairRow) -> StoredPair:
    return StoredPair(
        id=row.id,
        left_segment_id=row.left_segment_id,
        right_segment_id=row.right_segment_id,
        created_at=crud.as_utc(row.created_at),
        status=row.status,
    )


class DatabaseStore:
    """The worker's store on one database session (one store per worker process, used from one thread)."""

    def __init__(self, session_factory: sessionmaker[Session], engine: Engine | None = None) -> None:
        self.session = session_factory()
        self.engine = engine
        self.pair_segments: dict[int, tuple[int, int]] = {}  # pair id → segment ids (they never change)

    @classmethod
    def open(cls, settings: Settings) -> DatabaseStore:
        """A store on its own engine for these settings; `close()` disposes of it."""
        engine = make_engine(settings)
        return cls(make_session_factory(engine), engine)

    def close(self) -> None:
        self.session.close()
        if self.engine is not None:
            self.engine.dispose()

    def _fresh(self) -> Session:
        """The session with its read transaction ended: the next read sees other processes' commits."""
        self.session.rollback()
        return self.session

    # ---- experiments and their leases
    def experiments_needing_work(self) -> list[int]:
        return [e.id for e in crud.experiments_needing_work(self._fresh())]

    def experiment(self, experiment_id: int) -> ExperimentInfo:
        row = crud.get_experiment(self._fresh(), experiment_id=experiment_id)
        return ExperimentInfo(
            env_id=row.env_id,
            status=row.status,
            teacher_mode=row.teacher_mode,
            human_timeout_seconds=row.human_timeout_seconds,
            label_budget=row.label_budget,
            timestep_budget=row.timestep_budget,
            config=dict(row.config or {}),
            obs_shape=tuple(row.obs_shape),
            action_shape=tuple(row.action_shape),
            num_actions=row.num_actions,
            error=row.error,
        )

    def save_run_config(self, experiment_id: int, run: dict[str, Any]) -> None:
        config = dict(crud.get_experiment(self._fresh(), experiment_id=experiment_id).config or {})
        crud.update_experiment(self.session, experiment_id=experiment_id, changes={"config": {**config, "run": run}})

    def set_status(self, experiment_id: int, status: str) -> None:
        crud.update_experiment(self.session, experiment_id=experiment_id, changes={"status": status})

    def fail(self, experiment_id: int, error: str) -> None:
        changes = {"status": "failed", "error": error}
        crud.update_experiment(self.session, experiment_id=experiment_id, changes=changes)

    def acquire(self, experiment_id: int, worker_id: str, lease_seconds: float) -> bool:
        return crud.acquire_experiment(
            self.session, experiment_id=experiment_id, worker_id=worker_id, lease_seconds=lease_seconds
        )

    def release(self, experiment_id: int, worker_id: str) -> None:
        crud.release_experiment(self.session, experiment_id=experiment_id, worker_id=worker_id)

    # ---- segments and pairs
    def add_segments(self, experiment_id: int, segments: list[Segment], policy_step: int) -> list[int]:
        ids, _jobs = crud.add_segments(
            self.session, experiment_id=experiment_id, segments=[segment_in(s, policy_step) for s in segments]
        )
        return ids

    def segment(self, segment_id: int) -> Segment:
        row = crud.get_segment(self.session, segment_id=segment_id)
        arrays = crud.segment_arrays(row)
        return Segment(
            obs=arrays.obs.astype(np.float32, copy=False),
            actions=arrays.actions,
            true_rewards=arrays.true_rewards,
            ended=arrays.ended,
            env_id=row.env_id,
        )

    def add_pairs(self, experiment_id: int, pairs: list[tuple[int, int]]) -> list[int]:
        rows = [PairIn(left_segment_id=left, right_segment_id=right) for left, right in pairs]
        ids = crud.add_pairs(self.session, experiment_id=experiment_id, pairs=rows, source="worker")
        self.pair_segments.update(zip(ids, pairs, strict=True))
        return ids

    def pair(self, pair_id: int) -> StoredPair:
        return stored_pair(crud.get_pair(self._fresh(), pair_id=pair_id))

    def pending_pairs(self, experiment_id: int) -> list[StoredPair]:
        return [stored_pair(row) for row in crud.pending_pairs(self._fresh(), experiment_id=experiment_id)]

    def count_pairs(self, experiment_id: int) -> int:
        return crud.count_pairs_asked(self._fresh(), experiment_id=experiment_id)

    # ---- raters and labels
    def oracle_rater(self, experiment_id: int) -> int:
        return crud.oracle_rater_id(self.session, experiment_id=experiment_id)

    def lease_pair(self, experiment_id: int, rater_id: int, lease_seconds: float) -> PairLease | None:
        info = crud.lease_pair(
            self.session, experiment_id=experiment_id, rater_id=rater_id, lease_seconds=lease_seconds
        )
        return None if info is None else PairLease(lease_id=info.lease_id, pair_id=info.pair_id)

    def leased_pair_ids(self, experiment_id: int, rater_id: int) -> list[int]:
        return crud.leased_pair_ids(self._fresh(), experiment_id=experiment_id, rater_id=rater_id)

    def release_lease(self, lease_id: int, rater_id: int) -> None:
        crud.release_lease(self.session, rater_id=rater_id, lease_id=lease_id)

    def submit_label(self, rater_id: int, pair_id: int, choice: Choice, idempotency_key: str | None = None) -> int:
        try:
            label, _created = crud.submit_label(
                self.session, rater_id=rater_id, pair_id=pair_id, choice=choice, idempotency_key=idempotency_key
            )
        except Conflict as error:
            raise LabelRefused(error.detail) from None
        return label.id

    def undo_last_label(self, experiment_id: int, rater_id: int, lease_seconds: float) -> int:
        label, _lease = crud.undo_last_label(
            self.session, experiment_id=experiment_id, rater_id=rater_id, lease_seconds=lease_seconds
        )
        return label.pair_id

    def labels(self, experiment_id: int) -> list[StoredLabel]:
        session = self._fresh()
        rows, after = [], 0
        while page := crud.labels_after(session, experiment_id=experiment_id, after_id=after):
            rows.extend(page)
            after = page[-1].id
        for row in rows:
            if row.pair_id not in self.pair_segments:
                pair = crud.get_pair(session, pair_id=row.pair_id)
                self.pair_segments[pair.id] = (pair.left_segment_id, pair.right_segment_id)
        labels = [
            StoredLabel(row.id, row.pair_id, *self.pair_segments[row.pair_id], row.choice)  # type: ignore[arg-type]
            for row in rows
        ]
        return sorted(labels, key=lambda label: (label.pair_id, label.id))

    # ---- metrics and checkpoints
    def record_metrics(self, experiment_id: int, step: int, values: dict[str, float]) -> None:
        crud.record_metrics(self.session, experiment_id=experiment_id, step=step, values=values)

    def add_checkpoint(self, experiment_id: int, step: int, path: str, labels_used: int, meta: dict[str, Any]) -> None:
        crud.add_checkpoint(
            self.session, experiment_id=experiment_id, step=step, path=path, labels_used=labels_used, meta=meta
        )

    def latest_checkpoint(self, experiment_id: int) -> CheckpointRecord | None:
        row = crud.latest_checkpoint(self._fresh(), experiment_id=experiment_id)
        return None if row is None else CheckpointRecord(step=row.step, path=row.path, labels_used=row.labels_used)

    # ---- clip jobs
    def queue_clips(self, experiment_id: int, segment_ids: list[int]) -> None:
        crud.queue_segment_clips(self.session, experiment_id=experiment_id, segment_ids=segment_ids)

    def count_clips_queued(self, segment_ids: list[int]) -> int:
        return crud.count_clips_queued(self._fresh(), segment_ids=segment_ids)

    def claim_render_jobs(self, worker_id: str, limit: int) -> list[RenderJob]:
        jobs = crud.claim_jobs(self.session, worker_id=worker_id, kinds=[crud.RENDER_CLIP_JOB], limit=limit)
        return [RenderJob(job.id, int(job.payload["segment_id"]), dict(job.payload)) for job in jobs]

    def render_spec(self, segment_id: int) -> dict[str, Any] | None:
        spec = crud.get_segment(self.session, segment_id=segment_id).render_spec
        return None if spec is None else dict(spec)

    def clip(self, content_hash: str) -> ClipInfo | None:
        row = crud.get_clip(self.session, content_hash=content_hash)
        if row is None:
            return None
        return ClipInfo(video_path=row.video_path, frame_count=row.frame_count, width=row.width, height=row.height)

    def attach_clip(self, segment_id: int, clip: dict[str, Any]) -> None:
        crud.attach_clip(self.session, segment_id=segment_id, clip=clip)

    def complete_job(self, job_id: int, worker_id: str, result: dict[str, Any]) -> None:
        crud.complete_job(self.session, worker_id=worker_id, job_id=job_id, result=result)

    def fail_render_job(self, job: RenderJob, worker_id: str, error: str) -> None:
        session = self._fresh()
        crud.fail_job(session, worker_id=worker_id, job_id=job.id, error=error)
        if crud.get_job(session, job_id=job.id).status == "failed":
            crud.mark_clip_failed(session, segment_id=job.segment_id)

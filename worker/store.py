"""The worker's one door to the database, as an interface that speaks worker types only.

`ExperimentStore` is everything the worker process reads and writes: experiments and their leases, segments,
pairs, labels, metrics, checkpoints and clip jobs. `worker.db_store.DatabaseStore` implements it on the data
service (the only worker module that imports `app`); `worker.memory_store.MemoryStore` implements it in memory,
so the runner can be tested in-process without a server.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from worker.types import Choice, Segment

TeacherMode = str  # "oracle", "human" or "mixed"


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class LabelRefused(Exception):
    """The label was not stored: the pair is complete, the lease went to another rater, or the rater labeled it."""


@dataclass(frozen=True)
class ExperimentInfo:
    """What the worker needs to know about an experiment, read fresh on every call."""

    env_id: str
    status: str
    teacher_mode: TeacherMode
    human_timeout_seconds: float | None
    label_budget: int | None
    timestep_budget: int | None
    config: dict[str, Any] = field(default_factory=dict)
    """The experiment's stored config: "run" (a RunConfig dict), "render_clips" and anything the API kept."""
    obs_shape: tuple[int, ...] | None = None
    """The spaces it was created with, which stored segments must match; None: not declared (in-memory store)."""
    action_shape: tuple[int, ...] | None = None
    num_actions: int | None = None
    error: str | None = None
    """Status "failed": why the worker could not run it."""


@dataclass(frozen=True)
class StoredPair:
    """A pair asked about: its two segments' ids, when it was asked and whether it still waits for labels."""

    id: int
    left_segment_id: int
    right_segment_id: int
    created_at: datetime
    """Timezone-aware UTC."""
    status: str
    """"pending", "complete" or "cancelled"."""


@dataclass(frozen=True)
class StoredLabel:
    """One label held by the store (an undone label is gone)."""

    id: int
    pair_id: int
    left_segment_id: int
    right_segment_id: int
    choice: Choice


@dataclass(frozen=True)
class PairLease:
    """A pending pair held by a rater until the lease expires."""

    lease_id: int
    pair_id: int


@dataclass(frozen=True)
class CheckpointRecord:
    """A checkpoint file the worker wrote, relative to the data folder."""

    step: int
    path: str
    labels_used: int


@dataclass(frozen=True)
class RenderJob:
    """A claimed clip job: render (or encode uploaded frames of) one segment."""

    id: int
    segment_id: int
    payload: dict[str, Any]


@dataclass(frozen=True)
class ClipInfo:
    """A clip already encoded, by content hash."""

    video_path: str
    frame_count: int
    width: int
    height: int


class ExperimentStore(Protocol):
    """Every read and write of the worker; implementations translate to and from their storage."""

    # ---- experiments and their leases
    def experiments_needing_work(self) -> list[int]:
        """Ids of worker-run experiments not done or paused whose lease is free or expired, oldest first."""
        ...

    def experiment(self, experiment_id: int) -> ExperimentInfo: ...

    def save_run_config(self, experiment_id: int, run: dict[str, Any]) -> None:
        """Store the run's resolved RunConfig dict as the experiment's config["run"]."""
        ...

    def set_status(self, experiment_id: int, status: str) -> None: ...

    def fail(self, experiment_id: int, error: str) -> None:
        """Mark the experiment "failed", with `error` for its page; no worker takes it up until it is set back."""
        ...

    def acquire(self, experiment_id: int, worker_id: str, lease_seconds: float) -> bool:
        """Take or renew the experiment's lease; False while another worker's lease is live."""
        ...

    def release(self, experiment_id: int, worker_id: str) -> None: ...

    # ---- segments and pairs
    def add_segments(self, experiment_id: int, segments: list[Segment], policy_step: int) -> list[int]: ...

    def segment(self, segment_id: int) -> Segment: ...

    def add_pairs(self, experiment_id: int, pairs: list[tuple[int, int]]) -> list[int]:
        """Queue (left segment id, right segment id) pairs for labeling; their ids."""
        ...

    def pair(self, pair_id: int) -> StoredPair: ...

    def pending_pairs(self, experiment_id: int) -> list[StoredPair]:
        """Pairs still waiting for labels, in the order they were asked."""
        ...

    def count_pairs(self, experiment_id: int) -> int:
        """Pairs asked so far, pending or complete."""
        ...

    # ---- raters and labels
    def oracle_rater(self, experiment_id: int) -> int:
        """The experiment's synthetic-teacher rater, created on first use."""
        ...

    def lease_pair(self, experiment_id: int, rater_id: int, lease_seconds: float) -> PairLease | None: ...

    def leased_pair_ids(self, experiment_id: int, rater_id: int) -> list[int]:
        """Pending pairs the rater holds a lease on, live or expired."""
        ...

    def release_lease(self, lease_id: int, rater_id: int) -> None: ...

    def submit_label(self, rater_id: int, pair_id: int, choice: Choice, idempotency_key: str | None = None) -> int:
        """Store a leased pair's label (a replayed key returns the stored one); its id, or LabelRefused."""
        ...

    def undo_last_label(self, experiment_id: int, rater_id: int, lease_seconds: float) -> int:
        """Delete the rater's latest label and lease its pair back to them; the pair's id."""
        ...

    def labels(self, experiment_id: int) -> list[StoredLabel]:
        """Every label the experiment holds now, ordered by pair, then label."""
        ...

    # ---- metrics and checkpoints
    def record_metrics(self, experiment_id: int, step: int, values: dict[str, float]) -> None: ...

    def add_checkpoint(
        self, experiment_id: int, step: int, path: str, labels_used: int, meta: dict[str, Any]
    ) -> None: ...

    def latest_checkpoint(self, experiment_id: int) -> CheckpointRecord | None: ...

    # ---- clip jobs
    def queue_clips(self, experiment_id: int, segment_ids: list[int]) -> None:
        """Queue a job per segment to render its clip from its own observations."""
        ...

    def count_clips_queued(self, segment_ids: list[int]) -> int:
        """How many of these segments still wait for their clip."""
        ...

    def claim_render_jobs(self, worker_id: str, limit: int) -> list[RenderJob]: ...

    def render_spec(self, segment_id: int) -> dict[str, Any] | None:
        """The segment's replay spec (env_id, seed, actions, fps, first_frame), None for the worker's own."""
        ...

    def clip(self, content_hash: str) -> ClipInfo | None: ...

    def attach_clip(self, segment_id: int, clip: dict[str, Any]) -> None: ...

    def complete_job(self, job_id: int, worker_id: str, result: dict[str, Any]) -> None: ...

    def fail_render_job(self, job: RenderJob, worker_id: str, error: str) -> None:
        """Record a failure; after the job's last attempt the segment's clip is marked failed."""
        ...

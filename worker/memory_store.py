"""`ExperimentStore` in memory: the database's rules for what the runner uses, without a server.

Pairs stay pending until labeled, a rater labels a pair once and only while holding its lease, undo removes the
rater's latest label and leases the pair back, experiment leases expire. It has no clip jobs: a queued clip
counts as ready at once. For tests of the runner in one process, without a server.
"""

from __future__ import annotations

import copy
import itertools
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

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


@dataclass
class _Lease:
    id: int
    pair_id: int
    rater_id: int
    expires_at: float  # time.monotonic()


@dataclass
class _Experiment:
    info: ExperimentInfo
    owner: str | None = None
    owner_expires_at: float = 0.0
    oracle_id: int | None = None
    metrics: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    checkpoints: list[CheckpointRecord] = field(default_factory=list)


class MemoryStore:
    """Experiments, segments, pairs, leases and labels in dictionaries; one label wanted per pair."""

    def __init__(self) -> None:
        self.ids = itertools.count(1)
        self.experiments: dict[int, _Experiment] = {}
        self.segments: dict[int, Segment] = {}
        self.pairs: dict[int, tuple[int, StoredPair]] = {}  # pair id → (experiment id, pair)
        self.leases: dict[int, _Lease] = {}
        self.label_rows: dict[int, tuple[int, int, StoredLabel]] = {}  # label id → (experiment, rater, label)
        self.keys: dict[tuple[int, str], int] = {}  # (rater, idempotency key) → label id

    def create_experiment(
        self,
        env_id: str,
        run: dict[str, Any],
        teacher_mode: str = "oracle",
        label_budget: int | None = None,
        timestep_budget: int | None = None,
        human_timeout_seconds: float | None = None,
    ) -> int:
        """A worker-run experiment (config {"run": run}) in status "created"; its id."""
        experiment_id = next(self.ids)
        info = ExperimentInfo(
            env_id=env_id,
            status="created",
            teacher_mode=teacher_mode,
            human_timeout_seconds=human_timeout_seconds,
            label_budget=label_budget,
            timestep_budget=timestep_budget,
            config={"run": copy.deepcopy(run)},
        )
        self.experiments[experiment_id] = _Experiment(info)
        return experiment_id

    def update(self, experiment_id: int, **changes: Any) -> None:
        """Change the experiment as the API would (teacher_mode, budgets, status)."""
        entry = self.experiments[experiment_id]
        entry.info = replace(entry.info, **changes)

    def metrics(self, experiment_id: int) -> list[tuple[int, dict[str, float]]]:
        return list(self.experiments[experiment_id].metrics)

    # ---- experiments and their leases
    def experiments_needing_work(self) -> list[int]:
        now = time.monotonic()
        return [
            experiment_id
            for experiment_id, entry in sorted(self.experiments.items())
            if entry.info.status in ("created", "running")
            and "run" in entry.info.config
            and (entry.owner is None or entry.owner_expires_at < now)
        ]

    def experiment(self, experiment_id: int) -> ExperimentInfo:
        return copy.deepcopy(self.experiments[experiment_id].info)

    def save_run_config(self, experiment_id: int, run: dict[str, Any]) -> None:
        entry = self.experiments[experiment_id]
        entry.info = replace(entry.info, config={**entry.info.config, "run": copy.deepcopy(run)})

    def set_status(self, experiment_id: int, status: str) -> None:
        self.update(experiment_id, status=status)

    def fail(self, experiment_id: int, error: str) -> None:
        self.update(experiment_id, status="failed", error=error)

    def acquire(self, experiment_id: int, worker_id: str, lease_seconds: float) -> bool:
        entry = self.experiments[experiment_id]
        now = time.monotonic()
        if entry.owner not in (None, worker_id) and entry.owner_expires_at >= now:
            return False
        entry.owner, entry.owner_expires_at = worker_id, now + lease_seconds
        return True

    def release(self, experiment_id: int, worker_id: str) -> None:
        entry = self.experiments[experiment_id]
        if entry.owner == worker_id:
            entry.owner, entry.owner_expires_at = None, 0.0

    # ---- segments and pairs
    def add_segments(self, experiment_id: int, segments: list[Segment], policy_step: int) -> list[int]:
        ids = [next(self.ids) for _ in segments]
        self.segments.update(zip(ids, segments, strict=True))
        return ids

    def segment(self, segment_id: int) -> Segment:
        return self.segments[segment_id]

    def add_pairs(self, experiment_id: int, pairs: list[tuple[int, int]]) -> list[int]:
        for left, right in pairs:
            if left == right:
                raise ValueError("a segment cannot be compared with itself")
            if left not in self.segments or right not in self.segments:
                raise KeyError(f"no segment {left if left not in self.segments else right}")
        ids = []
        for left, right in pairs:
            pair_id = next(self.ids)
            self.pairs[pair_id] = (
                experiment_id,
                StoredPair(pair_id, left, right, datetime.now(UTC), "pending"),
            )
            ids.append(pair_id)
        return ids

    def pair(self, pair_id: int) -> StoredPair:
        return self.pairs[pair_id][1]

    def pending_pairs(self, experiment_id: int) -> list[StoredPair]:
        pairs = [pair for e, pair in self.pairs.values() if e == experiment_id and pair.status == "pending"]
        return sorted(pairs, key=lambda pair: pair.id)

    def count_pairs(self, experiment_id: int) -> int:
        return sum(e == experiment_id and p.status != "cancelled" for e, p in self.pairs.values())

    # ---- raters and labels
    def oracle_rater(self, experiment_id: int) -> int:
        entry = self.experiments[experiment_id]
        if entry.oracle_id is None:
            entry.oracle_id = next(self.ids)
        return entry.oracle_id

    def _has_labeled(self, rater_id: int, pair_id: int) -> bool:
        return any(r == rater_id and label.pair_id == pair_id for _e, r, label in self.label_rows.values())

    def lease_pair(self, experiment_id: int, rater_id: int, lease_seconds: float) -> PairLease | None:
        now = time.monotonic()
        live = {lease.pair_id for lease in self.leases.values() if lease.expires_at > now}
        for pair in reversed(self.pending_pairs(experiment_id)):  # newest first, as the database offers them
            if pair.id in live or self._has_labeled(rater_id, pair.id):
                continue
            lease = _Lease(next(self.ids), pair.id, rater_id, now + lease_seconds)
            self.leases[lease.id] = lease
            return PairLease(lease.id, pair.id)
        return None

    def leased_pair_ids(self, experiment_id: int, rater_id: int) -> list[int]:
        pending = {p.id for p in self.pending_pairs(experiment_id)}
        held = (lease.pair_id for lease in self.leases.values() if lease.rater_id == rater_id)
        return sorted(pair_id for pair_id in held if pair_id in pending)

    def release_lease(self, lease_id: int, rater_id: int) -> None:
        lease = self.leases.get(lease_id)
        if lease is None or lease.rater_id != rater_id:
            raise KeyError(f"no lease {lease_id} held by this rater")
        del self.leases[lease_id]

    def submit_label(self, rater_id: int, pair_id: int, choice: Choice, idempotency_key: str | None = None) -> int:
        if idempotency_key is not None and (rater_id, idempotency_key) in self.keys:
            label_id = self.keys[(rater_id, idempotency_key)]
            earlier = self.label_rows[label_id][2]
            if earlier.pair_id != pair_id or earlier.choice != choice:
                raise LabelRefused("idempotency key already used for a different label")
            return label_id
        experiment_id, pair = self.pairs[pair_id]
        if self._has_labeled(rater_id, pair_id):
            raise LabelRefused("this rater already labeled the pair")
        held = [lease for lease in self.leases.values() if lease.pair_id == pair_id and lease.rater_id == rater_id]
        if not held:
            raise LabelRefused("the rater does not hold a lease on this pair")
        if pair.status != "pending":
            raise LabelRefused("the pair is complete")
        label_id = next(self.ids)
        label = StoredLabel(label_id, pair_id, pair.left_segment_id, pair.right_segment_id, choice)
        self.label_rows[label_id] = (experiment_id, rater_id, label)
        if idempotency_key is not None:
            self.keys[(rater_id, idempotency_key)] = label_id
        for lease in held:
            del self.leases[lease.id]
        self.pairs[pair_id] = (experiment_id, replace(pair, status="complete"))
        return label_id

    def undo_last_label(self, experiment_id: int, rater_id: int, lease_seconds: float) -> int:
        mine = [i for i, (e, r, _label) in self.label_rows.items() if e == experiment_id and r == rater_id]
        if not mine:
            raise KeyError("this rater has no label to undo in the experiment")
        _e, _r, label = self.label_rows.pop(max(mine))
        self.keys = {key: i for key, i in self.keys.items() if i != label.id}
        pair = self.pairs[label.pair_id][1]
        self.pairs[label.pair_id] = (experiment_id, replace(pair, status="pending"))
        lease = _Lease(next(self.ids), label.pair_id, rater_id, time.monotonic() + lease_seconds)
        self.leases[lease.id] = lease
        return label.pair_id

    def labels(self, experiment_id: int) -> list[StoredLabel]:
        labels = [label for e, _r, label in self.label_rows.values() if e == experiment_id]
        return sorted(labels, key=lambda label: (label.pair_id, label.id))

    # ---- metrics and checkpoints
    def record_metrics(self, experiment_id: int, step: int, values: dict[str, float]) -> None:
        self.experiments[experiment_id].metrics.append((step, dict(values)))

    def add_checkpoint(self, experiment_id: int, step: int, path: str, labels_used: int, meta: dict[str, Any]) -> None:
        self.experiments[experiment_id].checkpoints.append(CheckpointRecord(step, path, labels_used))

    def latest_checkpoint(self, experiment_id: int) -> CheckpointRecord | None:
        checkpoints = self.experiments[experiment_id].checkpoints
        return max(reversed(checkpoints), key=lambda c: c.step) if checkpoints else None

    # ---- clip jobs: none here, a queued clip counts as ready at once
    def queue_clips(self, experiment_id: int, segment_ids: list[int]) -> None:
        pass

    def count_clips_queued(self, segment_ids: list[int]) -> int:
        return 0

    def claim_render_jobs(self, worker_id: str, limit: int) -> list[RenderJob]:
        return []

    def render_spec(self, segment_id: int) -> dict[str, Any] | None:
        return None

    def clip(self, content_hash: str) -> ClipInfo | None:
        return None

    def attach_clip(self, segment_id: int, clip: dict[str, Any]) -> None:
        raise NotImplementedError("the memory store renders no clips")

    def complete_job(self, job_id: int, worker_id: str, result: dict[str, Any]) -> None:
        raise NotImplementedError("the memory store has no jobs")

    def fail_render_job(self, job: RenderJob, worker_id: str, error: str) -> None:
        raise NotImplementedError("the memory store has no jobs")

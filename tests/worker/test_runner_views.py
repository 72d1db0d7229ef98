"""What the runner shows the researcher while people label: a metric point after every fit, a clip of the current
policy with checkpoints, corrections trained on within a few seconds, and a pause that takes effect at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import pytest
from test_runner import LABELS, OPTIONS, TIMESTEPS, Human, runner, tiny_run

from worker import service
from worker.memory_store import MemoryStore
from worker.service import run_worker


class RecordingStore(MemoryStore):
    """Keeps each checkpoint's meta (the in-memory store drops it) and can act on recorded metrics."""

    def __init__(self) -> None:
        super().__init__()
        self.metas: list[dict[str, Any]] = []
        self.on_metrics = lambda step, values: None

    def add_checkpoint(self, experiment_id: int, step: int, path: str, labels_used: int, meta: dict[str, Any]) -> None:
        super().add_checkpoint(experiment_id, step, path, labels_used, meta)
        self.metas.append(dict(meta))

    def record_metrics(self, experiment_id: int, step: int, values: dict[str, float]) -> None:
        super().record_metrics(experiment_id, step, values)
        self.on_metrics(step, values)


def test_every_fit_records_accuracy_labels_and_true_return_and_checkpoints_carry_a_policy_clip(
    tmp_path: Path,
) -> None:
    store = RecordingStore()
    # eval_every is far beyond the run: every point but the first and the last comes from a fit.
    experiment_id = store.create_experiment("CartPole-v1", tiny_run(), timestep_budget=TIMESTEPS)
    options = service.WorkerOptions(**{**OPTIONS.__dict__, "policy_clip_every_seconds": 0.001})
    assert run_worker(store, tmp_path, options, worker_id="worker-a", exit_when_idle=True) == 0

    points = store.metrics(experiment_id)
    after_fits = [values for _step, values in points[1:-1]]
    assert len(after_fits) >= 3  # the label schedule asks in several batches
    assert all({"labels/count", "env/true_return"} <= values.keys() for values in after_fits)
    counts = [values["labels/count"] for values in after_fits]
    assert counts == sorted(counts) and 0 < counts[0] < LABELS and counts[-1] == LABELS
    # Held-out accuracy exists once a few labels can be held out (NaN, so not stored, before).
    accuracies = [values["reward/val_accuracy"] for values in after_fits if "reward/val_accuracy" in values]
    assert len(accuracies) >= 2 and all(0.0 <= accuracy <= 1.0 for accuracy in accuracies)

    clips = [meta["policy_clip"] for meta in store.metas if "policy_clip" in meta]
    assert clips and clips[-1].startswith(f"policy/experiment-{experiment_id}/step-")
    latest = tmp_path / "clips" / clips[-1]
    with av.open(str(latest)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert sum(1 for _ in container.decode(stream)) >= 8  # CartPole under a fresh policy lasts 8+ steps
    assert len(list(latest.parent.glob("step-*.mp4"))) <= OPTIONS.keep_checkpoints + 1  # old clips removed


def test_a_label_changed_after_the_last_fit_is_trained_on_before_the_run_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RecordingStore()
    experiment_id = store.create_experiment("CartPole-v1", tiny_run(), "human", timestep_budget=TIMESTEPS)
    human = Human(store, experiment_id)
    monkeypatch.setattr(service.time, "sleep", human.answer)
    run = runner(store, experiment_id, tmp_path, recheck_labels_seconds=0.0)
    changed: list[int] = []
    trained_on_change: list[bool] = []

    def after_metrics(_step: int, values: dict[str, float]) -> None:
        if values.get("labels/count") == LABELS and not changed:  # the point after the last fit
            pair_id = store.undo_last_label(experiment_id, Human.RATER, 30.0)
            changed.append(store.submit_label(Human.RATER, pair_id, "right"))  # the rater changed their mind
        elif changed and run.learner is not None and run.learner.ppo.timesteps < TIMESTEPS:
            trained_on_change.append(changed[0] in [pair.key for pair in run.learner.labeled])

    store.on_metrics = after_metrics
    original_acquire = store.acquire

    def acquire(experiment: int, worker_id: str, lease_seconds: float) -> bool:
        after_metrics(0, {})  # once per training step: is the change trained on yet?
        return original_acquire(experiment, worker_id, lease_seconds)

    monkeypatch.setattr(store, "acquire", acquire)
    assert run.run() == "done"
    assert changed and any(trained_on_change)  # refit during training, not only at the end
    assert run.learner is not None
    assert [pair.key for pair in run.learner.labeled] == [label.id for label in store.labels(experiment_id)]


def test_pause_checkpoints_and_releases_and_resume_finishes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = MemoryStore()
    experiment_id = store.create_experiment("CartPole-v1", tiny_run(), "human", timestep_budget=TIMESTEPS)
    human = Human(store, experiment_id)

    def pause_after_two() -> None:
        if len(human.answered) == 2:
            store.set_status(experiment_id, "paused")

    human.on_answer = pause_after_two
    monkeypatch.setattr(service.time, "sleep", human.answer)
    first = runner(store, experiment_id, tmp_path, status_check_seconds=0.0)
    assert first.run() == "paused"
    assert store.experiment(experiment_id).status == "paused"
    assert store.experiments_needing_work() == []  # no worker takes a paused experiment
    checkpoint = store.latest_checkpoint(experiment_id)
    assert checkpoint is not None and checkpoint.step < TIMESTEPS

    human.on_answer = lambda: None
    store.set_status(experiment_id, "running")
    assert store.experiments_needing_work() == [experiment_id]
    second = runner(store, experiment_id, tmp_path, worker_id="worker-b")
    assert second.run() == "done"
    assert len(store.labels(experiment_id)) == LABELS

"""The experiment runner in-process, on the in-memory store: no server, no database, tiny CartPole budgets."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from worker import env_settings, service
from worker.config import RunConfig
from worker.memory_store import MemoryStore
from worker.service import ExperimentRunner, StopFlag, WorkerOptions, run_worker

LABELS = 6
TIMESTEPS = 4096  # eight CartPole rollouts of 16 envs x 32 steps
OPTIONS = WorkerOptions(lease_seconds=30.0, poll_seconds=0.0)


def tiny_run(**overrides: object) -> dict:
    run = RunConfig(
        env_id="CartPole-v1", labels=LABELS, seed=0, query="uniform", segment_length=20, eval_every=100_000,
        eval_episodes=2,
    )  # fmt: skip
    return {**run.to_dict(), **overrides}


def runner(store: MemoryStore, experiment_id: int, tmp_path: Path, stop: StopFlag | None = None, **options):
    worker_id = str(options.pop("worker_id", "worker-a"))
    assert store.acquire(experiment_id, worker_id, OPTIONS.lease_seconds)
    opts = WorkerOptions(**{**OPTIONS.__dict__, **options})
    return ExperimentRunner(store, tmp_path, experiment_id, worker_id, opts, stop or StopFlag())


class StopAfter(StopFlag):
    """A stop requested at the `checks`-th look at the flag (the runner looks once per training step)."""

    def __init__(self, checks: int) -> None:
        self.checks_left = checks

    @property  # type: ignore[override]
    def requested(self) -> bool:
        self.checks_left -= 1
        return self.checks_left < 0


class Human:
    """A rater who answers while the worker waits (the worker's poll sleep), through the store as the API does."""

    RATER = 1_000_000

    def __init__(self, store: MemoryStore, experiment_id: int) -> None:
        self.store = store
        self.experiment_id = experiment_id
        self.answered: list[int] = []
        self.undone: list[int] = []
        self.undo_when_answered: int | None = None
        self.on_answer = lambda: None

    def answer(self, _seconds: float) -> None:
        store = self.store
        if self.undo_when_answered is not None and len(self.answered) == self.undo_when_answered:
            self.undo_when_answered = None
            self.undone.append(max(label.id for label in store.labels(self.experiment_id)))
            pair_id = store.undo_last_label(self.experiment_id, self.RATER, 30.0)
            self.answered.append(store.submit_label(self.RATER, pair_id, "right"))  # a changed mind
            return
        lease = store.lease_pair(self.experiment_id, self.RATER, 30.0)
        if lease is not None:
            self.answered.append(store.submit_label(self.RATER, lease.pair_id, "left"))
            self.on_answer()


def test_oracle_run_finishes_with_every_label_through_the_store(tmp_path: Path) -> None:
    store = MemoryStore()
    experiment_id = store.create_experiment("CartPole-v1", tiny_run(), timestep_budget=TIMESTEPS)
    assert run_worker(store, tmp_path, OPTIONS, worker_id="worker-a", exit_when_idle=True) == 0

    experiment = store.experiment(experiment_id)
    assert experiment.status == "done"
    labels = store.labels(experiment_id)
    assert len(labels) == LABELS == store.count_pairs(experiment_id)
    assert not store.pending_pairs(experiment_id)
    assert store.experiments_needing_work() == []
    checkpoint = store.latest_checkpoint(experiment_id)
    assert checkpoint is not None and checkpoint.step >= TIMESTEPS and checkpoint.labels_used == LABELS
    assert (tmp_path / checkpoint.path).is_file()
    last_step, last = store.metrics(experiment_id)[-1]
    assert last_step >= TIMESTEPS and last["labels/count"] == LABELS
    assert {"env/true_return", "reward/val_accuracy"} <= last.keys()


def test_human_mode_trains_on_exactly_the_labels_the_store_holds_after_an_undo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MemoryStore()
    experiment_id = store.create_experiment("CartPole-v1", tiny_run(), "human", timestep_budget=TIMESTEPS)
    human = Human(store, experiment_id)
    human.undo_when_answered = 5  # after the reward model has been fit on those five labels
    monkeypatch.setattr(service.time, "sleep", human.answer)
    run = runner(store, experiment_id, tmp_path)
    assert run.run() == "done"

    stored = [label.id for label in store.labels(experiment_id)]
    assert len(stored) == LABELS and human.undone and human.undone[0] not in stored
    assert run.learner is not None
    assert [pair.key for pair in run.learner.labeled] == stored
    assert [pair.choice for pair in run.learner.labeled].count("right") == 1


def test_a_lost_lease_stops_the_run_without_finishing_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = MemoryStore()
    experiment_id = store.create_experiment("CartPole-v1", tiny_run(), "human", timestep_budget=TIMESTEPS)
    human = Human(store, experiment_id)

    def another_worker_takes_over() -> None:
        if len(human.answered) == 2:
            store.release(experiment_id, "worker-a")  # as if this worker's lease had expired
            assert store.acquire(experiment_id, "worker-b", 300.0)

    human.on_answer = another_worker_takes_over
    monkeypatch.setattr(service.time, "sleep", human.answer)
    assert runner(store, experiment_id, tmp_path, lease_seconds=0.001).run() == "lost"
    assert store.experiment(experiment_id).status == "running"
    assert not store.acquire(experiment_id, "worker-a", 30.0)


def test_stop_then_resume_finishes_with_the_settings_it_started_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MemoryStore()
    experiment_id = store.create_experiment("CartPole-v1", tiny_run(timesteps=0))  # the env's default, resolved
    started_with = env_settings.ENV_SETTINGS["CartPole-v1"]
    monkeypatch.setitem(env_settings.ENV_SETTINGS, "CartPole-v1", replace(started_with, timesteps=TIMESTEPS))
    first = runner(store, experiment_id, tmp_path, stop=StopAfter(4))
    assert first.run() == "stopped"
    assert store.experiment(experiment_id).config["run"]["timesteps"] == TIMESTEPS
    checkpoint = store.latest_checkpoint(experiment_id)
    assert checkpoint is not None and 0 < checkpoint.step < TIMESTEPS
    assert store.experiments_needing_work() == [experiment_id]  # released at once

    # Today's code would pick another default; the run keeps the one it was started with.
    changed_ppo = replace(started_with.ppo, learning_rate=started_with.ppo.learning_rate / 10)
    today = replace(started_with, timesteps=10 * TIMESTEPS, ppo=changed_ppo)
    monkeypatch.setitem(env_settings.ENV_SETTINGS, "CartPole-v1", today)
    second = runner(store, experiment_id, tmp_path, worker_id="worker-b")
    assert second.run() == "done"
    assert second.learner is not None
    assert second.learner.config.timesteps == TIMESTEPS
    assert second.learner.ppo.config == started_with.ppo
    assert TIMESTEPS <= second.learner.ppo.timesteps < TIMESTEPS + 512
    assert len(store.labels(experiment_id)) == LABELS
    assert [pair.key for pair in second.learner.labeled] == [label.id for label in store.labels(experiment_id)]

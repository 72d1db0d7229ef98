"""The training worker: runs experiments stored in the database, with labels from raters and the oracle.

A worker process loops over experiments that need work (`store.experiments_needing_work`), takes one with
`store.acquire` (a lease it renews every step: a worker that stops heart-beating loses it and another takes
over) and runs `worker.loop.Learner` on it: the same training loop as the in-process `rlhf run`, with one
difference, where labels come from. Here `ask` stores the chosen segments and pairs and waits until they are
labeled:

- "oracle": the synthetic teacher answers through the store's `submit_label` as the experiment's oracle rater;
- "human": raters answer on the rater page;
- "mixed": the teacher answers the pairs no human answered within `human_timeout_seconds`.

The mode is read again before every pair, so a switch over the API acts from the next pair. The reward model
is always refit on every label the store holds. Checkpoints (`worker.loop.save_checkpoint`: the learner's and
the teacher's whole state) go to the data folder and `store.add_checkpoint`; a worker that (re)acquires an
experiment resumes from the latest one. SIGTERM finishes the current step, checkpoints and exits 0.

All reads and writes go through an `ExperimentStore` (worker/store.py): the database one in the worker
process, the in-memory one in tests.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from worker.clip_jobs import process_clip_jobs, render_policy_clip
from worker.config import RunConfig
from worker.envs import describe_env, is_mujoco_env
from worker.loop import Learner, load_checkpoint, save_checkpoint
from worker.render import can_render_from_obs
from worker.store import ExperimentInfo, ExperimentStore, LabelRefused, default_worker_id
from worker.teachers import Teacher, make_teacher
from worker.types import Choice, LabeledPair, Segment

logger = logging.getLogger("rlhf.worker.service")

# Mixed mode without a configured timeout: humans get this long before the teacher answers.
DEFAULT_HUMAN_TIMEOUT_SECONDS = 300.0


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker process behaves (not how it trains: that is the experiment's RunConfig)."""

    lease_seconds: float = 30.0
    """An experiment stays this worker's this long after its last heartbeat (one per training step)."""
    poll_seconds: float = 0.5
    """Pause between looks at the database while there is nothing to do or labels are awaited."""
    checkpoint_every_seconds: float = 10.0
    """Most training time a crash can lose (a checkpoint also follows every label batch)."""
    oracle_lease_seconds: float = 30.0
    """How long the oracle holds a leased pair; a restarted worker answers its own leases at once."""
    clip_jobs_per_poll: int = 4
    """Render jobs taken between steps (clips for human raters)."""
    keep_checkpoints: int = 2
    """Checkpoint files kept per experiment; older ones are deleted."""
    recheck_labels_seconds: float = 5.0
    """How often the stored labels are compared with those trained on, so a changed, undone or dropped label
    stops being trained on without waiting for the next query batch."""
    status_check_seconds: float = 1.0
    """How often the experiment's status is read while training, so a pause takes effect within this long."""
    policy_clip_every_seconds: float = 20.0
    """Least time between two clips of the current policy (rendered after a checkpoint; 0 renders none)."""


class StopFlag:
    """Set by SIGTERM / SIGINT: the worker finishes its step, checkpoints and exits."""

    def __init__(self) -> None:
        self.requested = False

    def request(self, _signum: int | None = None, _frame: FrameType | None = None) -> None:
        self.requested = True

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self.request)
        signal.signal(signal.SIGINT, self.request)


class LeaseLost(Exception):
    """Another worker owns the experiment now (this one missed its heartbeats): stop without writing."""


class Stopping(Exception):
    """A stop was requested while waiting for labels."""


class Paused(Stopping):
    """The admin paused the experiment: checkpoint and give it up until it is resumed."""


def run_config_for(experiment: ExperimentInfo) -> RunConfig:
    """The experiment's training config: its stored "run" settings with the experiment's env and budgets.

    The worker stores the result (resolved: every env-dependent default filled in) when it starts the run, and
    every checkpoint holds it too, so what decided the run is kept with it.
    """
    data: dict[str, Any] = dict(experiment.config.get("run", {}))
    data["env_id"] = experiment.env_id
    if experiment.label_budget is not None:
        data["labels"] = experiment.label_budget
    if experiment.timestep_budget is not None:
        data["timesteps"] = experiment.timestep_budget
    return RunConfig.from_dict(data).resolved()


def env_problem(experiment: ExperimentInfo) -> str | None:
    """Why the worker cannot run the experiment's env, in one line; None when it can.

    The web process never imports an env, so this is the first place a user's `module:ClassName` is tried: a
    module that does not import, a class that is not an env, spaces the learner does not support, or spaces
    other than those the experiment was created with (the store would refuse every segment).
    """
    try:
        spaces = describe_env(experiment.env_id)
    except ValueError as error:
        return str(error)
    except Exception as error:  # the user's env class: whatever its constructor raises fails the experiment
        return f"env '{experiment.env_id}' could not be made: {type(error).__name__}: {error}"
    declared = (experiment.obs_shape, experiment.action_shape, experiment.num_actions)
    actual = (spaces.obs_shape, spaces.action_shape, spaces.num_actions if spaces.discrete else None)
    if experiment.obs_shape is not None and declared != actual:
        return (
            f"env '{experiment.env_id}' has observations {list(spaces.obs_shape)}, actions "
            f"{list(spaces.action_shape)}, num_actions {actual[2]}; the experiment was created with "
            f"observations {list(experiment.obs_shape)}, actions {list(experiment.action_shape or ())}, "
            f"num_actions {experiment.num_actions}"
        )
    return None


class ExperimentRunner:
    """Runs one experiment this worker has acquired, until done, stopped or its lease is lost."""

    def __init__(
        self,
        store: ExperimentStore,
        data_dir: Path,
        experiment_id: int,
        worker_id: str,
        options: WorkerOptions,
        stop: StopFlag,
    ) -> None:
        self.store = store
        self.data_dir = data_dir
        self.experiment_id = experiment_id
        self.worker_id = worker_id
        self.options = options
        self.stop = stop
        self.segments: dict[int, Segment] = {}  # segment id → arrays, so labels need no second read
        self.last_heartbeat = 0.0
        self.last_checkpoint = time.monotonic()
        self.last_label_check = time.monotonic()
        self.last_status_check = 0.0
        self.last_policy_clip: float | None = None
        self.learner: Learner | None = None

    # ---- the run ----------------------------------------------------------------------------------------
    def run(self) -> str:
        """Train until the budgets are spent; returns "done", "stopped", "paused", "lost" or "failed"."""
        store = self.store
        try:
            experiment = store.experiment(self.experiment_id)
            problem = env_problem(experiment)
            if problem is not None:
                logger.error("experiment %s failed: %s", self.experiment_id, problem)
                store.fail(self.experiment_id, problem)
                store.release(self.experiment_id, self.worker_id)
                return "failed"
            config = run_config_for(experiment)
            if experiment.config.get("run") != config.to_dict():
                # Stored resolved on first start: a resumed run never resolves today's defaults again.
                store.save_run_config(self.experiment_id, config.to_dict())
            self.render_always = bool(experiment.config.get("render_clips", False))
            self.teacher: Teacher = make_teacher(
                config.teacher, np.random.default_rng(config.seed + 1), config.teacher_params
            )
            self.oracle_id = store.oracle_rater(self.experiment_id)
            self.learner = self._resume(config)
            if experiment.status != "running":
                store.set_status(self.experiment_id, "running")
            return self._train(self.learner)
        except LeaseLost:
            logger.warning("experiment %s: lease lost to another worker; stopping", self.experiment_id)
            return "lost"
        finally:
            if self.learner is not None:
                self.learner.ppo.close()

    def _train(self, learner: Learner) -> str:
        store = self.store
        try:
            while not learner.done:
                self._heartbeat(force=True)
                if self.stop.requested:
                    raise Stopping
                evaluations = len(learner.curve)
                keys_before = [p.key for p in learner.labeled]
                learner.step(self._ask)
                self._recheck_labels(learner)
                new_labels = [p.key for p in learner.labeled] != keys_before
                if new_labels:
                    # A point after every fit, so the page's curves move while people label: the reward model's
                    # held-out accuracy and label count, and the policy's true return (gym envs have one).
                    learner.evaluate()
                self._record_evaluations(evaluations)
                if new_labels or time.monotonic() - self.last_checkpoint >= self.options.checkpoint_every_seconds:
                    self._checkpoint()
                self._render_some_clips()
            # Every pair asked must be answered before the run ends: the label budget is spent in full.
            if store.pending_pairs(self.experiment_id):
                self._wait_for_labels()
            self._catch_up(learner)
        except Stopping as stopping:
            self._checkpoint()
            store.release(self.experiment_id, self.worker_id)
            paused = isinstance(stopping, Paused)
            logger.info(
                "experiment %s: %s at %s steps", self.experiment_id, "paused" if paused else "stopped",
                learner.ppo.timesteps,
            )
            return "paused" if paused else "stopped"
        evaluations = len(learner.curve)
        result = learner.finish(self.teacher)
        self._record_evaluations(evaluations)
        self._checkpoint()
        store.set_status(self.experiment_id, "done")
        store.release(self.experiment_id, self.worker_id)
        logger.info(
            "experiment %s done: true return %.1f with %d labels",
            self.experiment_id,
            result.metrics["final_true_return"],
            result.metrics["labels_used"],
        )
        return "done"

    # ---- labels through the store ------------------------------------------------------------------------
    def _ask(self, candidates: list[Segment], indices: np.ndarray) -> list[LabeledPair]:
        """Queue the chosen (P, 2) pairs, wait until every pending pair is labeled; all labels so far."""
        learner = self._learner
        chosen = list(dict.fromkeys(int(i) for pair in indices for i in pair))  # each segment stored once
        wants_clips = self._wants_clips()
        stored = [candidates[i] for i in chosen]
        if not wants_clips:  # a MuJoCo start state stored is a clip queued: none wanted, none stored
            stored = [replace(s, start_state=None) if s.start_state is not None else s for s in stored]
        self._heartbeat(force=True)  # still ours, right before writing
        ids = self.store.add_segments(self.experiment_id, stored, learner.ppo.timesteps)
        id_of = dict(zip(chosen, ids, strict=True))
        self.segments.update({id_of[i]: candidates[i] for i in chosen})
        if wants_clips:
            # A rater is shown a pair only once both its clips can play. Segments with a MuJoCo start state had
            # their replay queued as they were stored; the others are drawn from their observations.
            from_obs = [i for i, segment in zip(ids, stored, strict=True) if segment.start_state is None]
            if from_obs:
                self.store.queue_clips(self.experiment_id, from_obs)
            self._wait_for_clips(ids)
        self.store.add_pairs(self.experiment_id, [(id_of[int(i)], id_of[int(j)]) for i, j in indices])
        self._wait_for_labels()
        return self._all_labels()

    @property
    def _learner(self) -> Learner:
        assert self.learner is not None, "the learner is made when the run starts"
        return self.learner

    def _wants_clips(self) -> bool:
        mode, _timeout = self._mode()
        env_id = self._learner.config.env_id
        renderable = can_render_from_obs(env_id) or is_mujoco_env(env_id)
        return (self.render_always or mode != "oracle") and renderable

    def _mode(self) -> tuple[str, float]:
        """The experiment's teacher mode and human timeout, as stored now."""
        experiment = self.store.experiment(self.experiment_id)
        return experiment.teacher_mode, experiment.human_timeout_seconds or DEFAULT_HUMAN_TIMEOUT_SECONDS

    def _wait_for_clips(self, segment_ids: list[int]) -> None:
        """Render these segments' clips (other workers may take some of the jobs) until none is left queued."""
        while self.store.count_clips_queued(segment_ids):
            if self.stop.requested:
                raise Stopping
            self._heartbeat()
            if not self._render_some_clips():
                time.sleep(self.options.poll_seconds)

    def _wait_for_labels(self) -> None:
        """Until no pair of the experiment is pending: let the oracle answer where the mode allows, else poll."""
        while True:
            if not self.store.pending_pairs(self.experiment_id):
                return
            if self._oracle_answers():
                continue
            if self.stop.requested:
                raise Stopping
            self._heartbeat()
            if not self._render_some_clips():
                time.sleep(self.options.poll_seconds)

    @staticmethod
    def _oracle_may_answer(mode: str, timeout: float, pair_created_at: datetime) -> bool:
        if mode == "oracle":
            return True
        if mode == "mixed":
            return (datetime.now(UTC) - pair_created_at).total_seconds() >= timeout
        return False

    def _oracle_answers(self) -> int:
        """The synthetic teacher answers pending pairs one at a time while the mode lets it.

        The teacher judges all pending pairs in one call, in the order they were asked (as in the in-process
        loop; B-Pref's thresholds scale with a batch), but each answer is leased and stored only after the mode
        is read again: a switch to human mode takes effect at the next pair.

        Returns:
            How many labels it stored.
        """
        store = self.store
        # Pairs this oracle leased before a crash come first (a fresh lease would skip them).
        held = iter(store.leased_pair_ids(self.experiment_id, self.oracle_id))
        choices: dict[int, Choice] = {}
        stored = 0
        while True:
            mode, timeout = self._mode()  # read once per pair: a switch acts from the next one
            pair_id, lease_id = next(held, None), None
            if pair_id is None:
                if mode == "human":
                    break
                lease = store.lease_pair(self.experiment_id, self.oracle_id, self.options.oracle_lease_seconds)
                if lease is None:
                    break
                pair_id, lease_id = lease.pair_id, lease.lease_id
            if not self._oracle_may_answer(mode, timeout, store.pair(pair_id).created_at):
                if lease_id is not None:
                    store.release_lease(lease_id, self.oracle_id)
                break
            if pair_id not in choices:
                choices.update(self._judge_pending_pairs())
                if pair_id not in choices:  # completed meanwhile by a human
                    continue
            try:
                store.submit_label(self.oracle_id, pair_id, choices[pair_id], idempotency_key=f"oracle:{pair_id}")
            except LabelRefused as error:  # a human answered first and the pair is complete: nothing to add
                logger.info("oracle label for pair %s refused: %s", pair_id, error)
                continue
            stored += 1
        return stored

    def _judge_pending_pairs(self) -> dict[int, Choice]:
        """The teacher's choice for every pending pair, from one call in the order the pairs were asked."""
        pairs = self.store.pending_pairs(self.experiment_id)
        segment_pairs = [(self._segment(p.left_segment_id), self._segment(p.right_segment_id)) for p in pairs]
        return dict(zip([p.id for p in pairs], self.teacher.answer(segment_pairs), strict=True))

    def _segment(self, segment_id: int) -> Segment:
        segment = self.segments.get(segment_id)
        if segment is None:
            segment = self.segments[segment_id] = self.store.segment(segment_id)
        return segment

    def _all_labels(self) -> list[LabeledPair]:
        """Exactly the labels the store holds now (an undone one is gone), ordered by pair then label.

        Read in full on every call, so the reward model never trains on a label a rater took back.
        """
        labels = self.store.labels(self.experiment_id)
        segment = self._segment
        return [LabeledPair(segment(x.left_segment_id), segment(x.right_segment_id), x.choice, x.id) for x in labels]

    # ---- ownership, clips, metrics -----------------------------------------------------------------------
    def _heartbeat(self, force: bool = False) -> None:
        """Renew the experiment lease (at most every few seconds unless forced); LeaseLost if it is gone.

        Also reads the experiment's status now and then: Paused once the admin paused it.
        """
        now = time.monotonic()
        if now - self.last_status_check >= self.options.status_check_seconds:
            self.last_status_check = now
            if self.store.experiment(self.experiment_id).status == "paused":
                raise Paused
        if not force and now - self.last_heartbeat < self.options.lease_seconds / 4:
            return
        if not self.store.acquire(self.experiment_id, self.worker_id, self.options.lease_seconds):
            raise LeaseLost
        self.last_heartbeat = now

    def _render_some_clips(self) -> int:
        return process_clip_jobs(
            self.store, self.data_dir / "clips", limit=self.options.clip_jobs_per_poll, worker_id=self.worker_id
        )

    def _recheck_labels(self, learner: Learner) -> None:
        """Every few seconds, refit if the stored labels differ from those trained on (changed, undone, dropped)."""
        now = time.monotonic()
        if now - self.last_label_check < self.options.recheck_labels_seconds:
            return
        self.last_label_check = now
        self._catch_up(learner)

    def _record_evaluations(self, since: int) -> None:
        """Store the evaluation points added to the learning curve since index `since` as metric series."""
        for point in self._learner.curve[since:]:
            values = {key: value for key, value in point.items() if math.isfinite(value)}
            self.store.record_metrics(self.experiment_id, int(point["env/timesteps"]), values)

    # ---- checkpoints -------------------------------------------------------------------------------------
    def _checkpoint_dir(self) -> Path:
        return self.data_dir / "checkpoints" / f"experiment-{self.experiment_id}"

    def _checkpoint(self) -> None:
        """Write the training state to a file, then record it (a crash between the two loses nothing)."""
        learner = self._learner
        folder = self._checkpoint_dir()
        path = folder / f"step-{learner.ppo.timesteps:010d}-labels-{len(learner.labeled):06d}.pt"
        save_checkpoint(path, learner, self.teacher)
        meta: dict[str, Any] = {"worker": self.worker_id, "wall_seconds": learner.wall_seconds}
        clip = self._render_policy_clip()
        if clip is not None:
            meta["policy_clip"] = clip
        self.store.add_checkpoint(
            self.experiment_id,
            learner.ppo.timesteps,
            str(path.relative_to(self.data_dir)),
            labels_used=len(learner.labeled),
            meta=meta,
        )
        self.last_checkpoint = time.monotonic()
        for old in sorted(folder.glob("step-*.pt"))[: -self.options.keep_checkpoints]:
            old.unlink(missing_ok=True)

    def _render_policy_clip(self) -> str | None:
        """A clip of the deterministic policy now, when one is due (the first, then at most one per
        `policy_clip_every_seconds`); its path relative to the clip folder, where the experiment page finds it."""
        learner = self._learner
        every = self.options.policy_clip_every_seconds
        now = time.monotonic()
        if every <= 0 or not can_render_from_obs(learner.config.env_id):
            return None
        if self.last_policy_clip is not None and now - self.last_policy_clip < every:
            return None
        clip_dir = self.data_dir / "clips"
        folder = clip_dir / "policy" / f"experiment-{self.experiment_id}"
        path = folder / f"step-{learner.ppo.timesteps:010d}.mp4"
        render_policy_clip(learner.ppo.act, learner.config.env_id, path, seed=learner.config.seed + 20_000)
        self.last_policy_clip = now
        for old in sorted(folder.glob("step-*.mp4"))[: -self.options.keep_checkpoints - 1]:
            old.unlink(missing_ok=True)
            old.with_suffix(".jpg").unlink(missing_ok=True)
        return str(path.relative_to(clip_dir))

    def _resume(self, config: RunConfig) -> Learner:
        """A learner from the latest checkpoint, if any, caught up with the labels stored since."""
        checkpoint = self.store.latest_checkpoint(self.experiment_id)
        path = self.data_dir / checkpoint.path if checkpoint is not None else None
        if path is not None and path.is_file():
            learner = load_checkpoint(path, self.teacher, config)
            logger.info("experiment %s: resumed at %s steps", self.experiment_id, learner.ppo.timesteps)
        else:
            learner = Learner(config)
        self.learner = learner
        learner.asked = self.store.count_pairs(self.experiment_id)
        self._catch_up(learner)
        return learner

    def _catch_up(self, learner: Learner) -> None:
        """Refit when the stored labels differ from those the reward model was fit on (added or undone)."""
        labels = self._all_labels()
        if [p.key for p in labels] != [p.key for p in learner.labeled]:
            learner.fit(labels)


def run_worker(
    store: ExperimentStore,
    data_dir: Path,
    options: WorkerOptions | None = None,
    stop: StopFlag | None = None,
    worker_id: str | None = None,
    exit_when_idle: bool = False,
) -> int:
    """Serve experiments that need work until stopped; between experiments, render clips.

    Args:
        store: the experiments (the database's in the worker process).
        data_dir: where checkpoints go (under checkpoints/) and clips (under clips/).
        options: lease, polling and checkpoint behaviour.
        stop: set it to stop after the current step (SIGTERM / SIGINT set it when installed).
        worker_id: this worker's name in leases and job claims; host:pid by default.
        exit_when_idle: return once no experiment needs work (for scripts and tests).

    Returns:
        The process exit code (0).
    """
    options = options or WorkerOptions()
    stop = stop or StopFlag()
    worker_id = worker_id or default_worker_id()
    logger.info("worker %s started", worker_id)
    while not stop.requested:
        waiting = store.experiments_needing_work()
        acquired = next((i for i in waiting if store.acquire(i, worker_id, options.lease_seconds)), None)
        if acquired is not None:
            ExperimentRunner(store, data_dir, acquired, worker_id, options, stop).run()
            continue
        done = process_clip_jobs(store, data_dir / "clips", limit=options.clip_jobs_per_poll, worker_id=worker_id)
        if exit_when_idle and not waiting and not done:
            break
        if not done:
            time.sleep(options.poll_seconds)
    logger.info("worker %s stopped", worker_id)
    return 0

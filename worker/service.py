"""The training worker: runs experiments stored in the database, with labels from raters and the oracle.

A worker process loops over experiments that need work (`crud.experiments_needing_work`), takes one with
`crud.acquire_experiment` (a lease it renews every step: a worker that stops heart-beating loses it and
another takes over) and runs `worker.loop.Learner` on it: the same training loop as the in-process
`rlhf run`, with one difference, where labels come from. Here `ask` stores the chosen segments and pairs in
the database and waits until they are labeled:

- "oracle": the synthetic teacher answers through `crud.submit_label` as the experiment's oracle rater;
- "human": raters answer on the rater page;
- "mixed": the teacher answers the pairs no human answered within `human_timeout_seconds`.

The mode is read again before every pair, so a switch over the API acts from the next pair. The reward model
is always refit on every label in the database. Checkpoints (policy, reward model, optimizers, RNG states and
the query pool) go to the data folder and `crud.add_checkpoint`; a worker that (re)acquires an experiment
resumes from the latest one. SIGTERM finishes the current step, checkpoints and exits 0.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch
from sqlalchemy.orm import Session, sessionmaker

from app import crud
from app.db import make_engine, make_session_factory
from app.errors import Conflict
from app.models import Experiment
from app.schemas import PairIn, SegmentIn
from app.settings import Settings
from worker.config import RunConfig
from worker.loop import Learner
from worker.pairs import select_pairs
from worker.render import can_render_from_obs
from worker.store import default_worker_id, process_clip_jobs, segment_from_row
from worker.teachers import Teacher, make_teacher
from worker.types import Choice, LabeledPair, Segment

logger = logging.getLogger("rlhf.worker.service")

CHECKPOINT_VERSION = 1
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


def run_config_for(experiment: Experiment) -> RunConfig:
    """The experiment's training config: its stored "run" settings with the experiment's env and budgets."""
    data: dict[str, Any] = dict(experiment.config.get("run", {}))
    data["env_id"] = experiment.env_id
    if experiment.label_budget is not None:
        data["labels"] = experiment.label_budget
    if experiment.timestep_budget is not None:
        data["timesteps"] = experiment.timestep_budget
    return RunConfig.from_dict(data).resolved()


def segment_in(segment: Segment, policy_step: int) -> SegmentIn:
    """A worker segment as the data layer's input (float32 → JSON float → float32 is exact)."""
    return SegmentIn(
        obs=segment.obs.tolist(),
        actions=segment.actions.tolist(),
        true_rewards=segment.true_rewards.tolist(),
        ended=segment.ended.tolist(),
        env_id=segment.env_id or None,
        policy_step=policy_step,
    )


class ExperimentRunner:
    """Runs one experiment this worker has acquired, until done, stopped or its lease is lost."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        data_dir: Path,
        experiment_id: int,
        worker_id: str,
        options: WorkerOptions,
        stop: StopFlag,
    ) -> None:
        self.session_factory = session_factory
        self.data_dir = data_dir
        self.experiment_id = experiment_id
        self.worker_id = worker_id
        self.options = options
        self.stop = stop
        self.session = session_factory()
        self.segments: dict[int, Segment] = {}  # segment id → arrays, so labels need no second read
        self.labels: list[tuple[int, int, LabeledPair]] = []  # (pair id, label id, pair) of every label
        self.last_label_id = 0
        self.last_heartbeat = 0.0
        self.last_checkpoint = time.monotonic()

    # ---- the run ----------------------------------------------------------------------------------------
    def run(self) -> str:
        """Train until the budgets are spent; returns "done", "stopped" or "lost"."""
        session = self.session
        try:
            experiment = crud.get_experiment(session, experiment_id=self.experiment_id)
            config = run_config_for(experiment)
            self.render_always = bool(experiment.config.get("render_clips", False))
            self.learner = Learner(config)
            self.teacher: Teacher = make_teacher(
                config.teacher, np.random.default_rng(config.seed + 1), config.teacher_params
            )
            self.oracle_id = crud.oracle_rater_id(session, experiment_id=self.experiment_id)
            self._resume()
            if experiment.status != "running":
                crud.update_experiment(session, experiment_id=self.experiment_id, changes={"status": "running"})
            return self._train()
        except LeaseLost:
            logger.warning("experiment %s: lease lost to another worker; stopping", self.experiment_id)
            return "lost"
        finally:
            if hasattr(self, "learner"):
                self.learner.ppo.close()
            self.session.close()

    def _train(self) -> str:
        learner = self.learner
        try:
            while not learner.done:
                self._heartbeat(force=True)
                if self.stop.requested:
                    raise Stopping
                evaluations = len(learner.curve)
                labels_before = len(learner.labeled)
                learner.step(self._ask)
                self._record_evaluations(evaluations)
                new_labels = len(learner.labeled) != labels_before
                if new_labels or time.monotonic() - self.last_checkpoint >= self.options.checkpoint_every_seconds:
                    self._checkpoint()
                self._render_some_clips()
            # Every pair asked must be answered before the run ends: the label budget is spent in full.
            if crud.pending_pairs(self.session, experiment_id=self.experiment_id):
                self._wait_for_labels()
            labels = self._all_labels()
            if len(labels) != len(learner.labeled):
                learner.fit(labels)
        except Stopping:
            self._checkpoint()
            crud.release_experiment(self.session, experiment_id=self.experiment_id, worker_id=self.worker_id)
            logger.info("experiment %s: stopped at %s steps", self.experiment_id, learner.ppo.timesteps)
            return "stopped"
        evaluations = len(learner.curve)
        result = learner.finish()
        self._record_evaluations(evaluations)
        self._checkpoint()
        crud.update_experiment(self.session, experiment_id=self.experiment_id, changes={"status": "done"})
        crud.release_experiment(self.session, experiment_id=self.experiment_id, worker_id=self.worker_id)
        logger.info(
            "experiment %s done: true return %.1f with %d labels",
            self.experiment_id,
            result.metrics["final_true_return"],
            result.metrics["labels_used"],
        )
        return "done"

    # ---- labels through the database ---------------------------------------------------------------------
    def _ask(self, candidates: list[Segment], count: int) -> list[LabeledPair]:
        """Choose `count` pairs, queue them, wait until every pending pair is labeled; all labels so far."""
        learner = self.learner
        trained = bool(learner.labeled)
        model = learner.reward_model if trained else None
        indices = select_pairs(candidates, count, learner.config.query, learner.rng, model)
        chosen = list(dict.fromkeys(int(i) for pair in indices for i in pair))  # each segment stored once
        self._heartbeat(force=True)  # still ours, right before writing
        ids, _jobs = crud.add_segments(
            self.session,
            experiment_id=self.experiment_id,
            segments=[segment_in(candidates[i], learner.ppo.timesteps) for i in chosen],
        )
        id_of = dict(zip(chosen, ids, strict=True))
        self.segments.update({id_of[i]: candidates[i] for i in chosen})
        if self._wants_clips():
            # A rater is shown a pair only once both its clips can play.
            crud.queue_segment_clips(self.session, experiment_id=self.experiment_id, segment_ids=ids)
            self._wait_for_clips(ids)
        pairs = [PairIn(left_segment_id=id_of[int(i)], right_segment_id=id_of[int(j)]) for i, j in indices]
        crud.add_pairs(self.session, experiment_id=self.experiment_id, pairs=pairs, source="worker")
        self._wait_for_labels()
        return self._all_labels()

    def _wants_clips(self) -> bool:
        mode, _timeout = self._mode()
        return (self.render_always or mode != "oracle") and can_render_from_obs(self.learner.config.env_id)

    def _mode(self) -> tuple[str, float]:
        """The experiment's teacher mode and human timeout, as stored now."""
        self.session.rollback()  # a fresh read: the mode may have been switched over the API
        experiment = crud.get_experiment(self.session, experiment_id=self.experiment_id)
        timeout = experiment.human_timeout_seconds or DEFAULT_HUMAN_TIMEOUT_SECONDS
        return experiment.teacher_mode, timeout

    def _wait_for_clips(self, segment_ids: list[int]) -> None:
        """Render these segments' clips (other workers may take some of the jobs) until none is left queued."""
        while crud.count_clips_queued(self.session, segment_ids=segment_ids):
            if self.stop.requested:
                raise Stopping
            self._heartbeat()
            if not self._render_some_clips():
                time.sleep(self.options.poll_seconds)

    def _wait_for_labels(self) -> None:
        """Until no pair of the experiment is pending: let the oracle answer where the mode allows, else poll."""
        while True:
            pending = crud.pending_pairs(self.session, experiment_id=self.experiment_id)
            if not pending:
                return
            answered = self._oracle_answers()
            if answered:
                continue
            if self.stop.requested:
                raise Stopping
            self._heartbeat()
            if not self._render_some_clips():
                time.sleep(self.options.poll_seconds)

    def _oracle_may_answer(self, pair_created_at: Any | None) -> bool:
        mode, timeout = self._mode()
        if mode == "oracle":
            return True
        if mode == "mixed" and pair_created_at is not None:
            return (crud.utcnow() - crud.as_utc(pair_created_at)).total_seconds() >= timeout
        return False

    def _oracle_answers(self) -> int:
        """The synthetic teacher answers pending pairs one at a time while the mode lets it.

        The teacher judges all pending pairs in one call, in the order they were asked (as in the in-process
        loop; B-Pref's thresholds scale with a batch), but each answer is leased and stored only after the mode
        is read again: a switch to human mode takes effect at the next pair.

        Returns:
            How many labels it stored.
        """
        session = self.session
        # Pairs this oracle leased before a crash come first (a fresh lease_pair would skip them).
        held = iter(crud.leased_pair_ids(session, experiment_id=self.experiment_id, rater_id=self.oracle_id))
        choices: dict[int, Choice] = {}
        stored = 0
        while True:
            pair_id, lease_id = next(held, None), None
            if pair_id is None:
                if self._mode()[0] == "human":
                    break
                info = crud.lease_pair(
                    session,
                    experiment_id=self.experiment_id,
                    rater_id=self.oracle_id,
                    lease_seconds=self.options.oracle_lease_seconds,
                )
                if info is None:
                    break
                pair_id, lease_id = info.pair_id, info.lease_id
            if not self._oracle_may_answer(crud.get_pair(session, pair_id=pair_id).created_at):
                if lease_id is not None:
                    crud.release_lease(session, lease_id=lease_id, rater_id=self.oracle_id)
                break
            if pair_id not in choices:
                choices.update(self._judge_pending_pairs())
                if pair_id not in choices:  # completed meanwhile by a human
                    continue
            try:
                key = f"oracle:{pair_id}"
                crud.submit_label(
                    session, rater_id=self.oracle_id, pair_id=pair_id, choice=choices[pair_id], idempotency_key=key
                )
            except Conflict as error:  # a human answered first and the pair is complete: nothing to add
                logger.info("oracle label for pair %s refused: %s", pair_id, error.detail)
                continue
            stored += 1
        return stored

    def _judge_pending_pairs(self) -> dict[int, Choice]:
        """The teacher's choice for every pending pair, from one call in the order the pairs were asked."""
        pairs = crud.pending_pairs(self.session, experiment_id=self.experiment_id)
        segment_pairs = [(self._segment(p.left_segment_id), self._segment(p.right_segment_id)) for p in pairs]
        return dict(zip([p.id for p in pairs], self.teacher.answer(segment_pairs), strict=True))

    def _segment(self, segment_id: int) -> Segment:
        segment = self.segments.get(segment_id)
        if segment is None:
            segment = segment_from_row(crud.get_segment(self.session, segment_id=segment_id))
            self.segments[segment_id] = segment
        return segment

    def _all_labels(self) -> list[LabeledPair]:
        """Every label in the database, ordered by pair then label (the order the pairs were asked in)."""
        self.session.rollback()
        new = crud.labels_after(self.session, experiment_id=self.experiment_id, after_id=self.last_label_id)
        for label in new:
            pair = crud.get_pair(self.session, pair_id=label.pair_id)
            labeled = LabeledPair(
                self._segment(pair.left_segment_id), self._segment(pair.right_segment_id), label.choice  # type: ignore[arg-type]
            )
            self.labels.append((pair.id, label.id, labeled))
            self.last_label_id = max(self.last_label_id, label.id)
        self.labels.sort(key=lambda item: (item[0], item[1]))
        return [labeled for _pair, _label, labeled in self.labels]

    # ---- ownership, clips, metrics -----------------------------------------------------------------------
    def _heartbeat(self, force: bool = False) -> None:
        """Renew the experiment lease (at most every few seconds unless forced); LeaseLost if it is gone."""
        now = time.monotonic()
        if not force and now - self.last_heartbeat < self.options.lease_seconds / 4:
            return
        if not crud.acquire_experiment(
            self.session,
            experiment_id=self.experiment_id,
            worker_id=self.worker_id,
            lease_seconds=self.options.lease_seconds,
        ):
            raise LeaseLost
        self.last_heartbeat = now

    def _render_some_clips(self) -> int:
        settings_clip_dir = self.data_dir / "clips"
        return process_clip_jobs(
            self.session_factory, settings_clip_dir, limit=self.options.clip_jobs_per_poll, worker_id=self.worker_id
        )

    def _record_evaluations(self, since: int) -> None:
        """Store the evaluation points added to the learning curve since index `since` as metric series."""
        for point in self.learner.curve[since:]:
            values = {
                "env/true_return": point["true_return"],
                "env/true_return_std": point["true_return_std"],
                "env/timesteps": point["timesteps"],
                "labels/count": point["labels"],
                "time/wall_seconds": point["wall_seconds"],
            }
            if math.isfinite(point["reward_accuracy"]):
                values["reward/accuracy"] = point["reward_accuracy"]
            crud.record_metrics(
                self.session, experiment_id=self.experiment_id, step=int(point["timesteps"]), values=values
            )

    # ---- checkpoints -------------------------------------------------------------------------------------
    def _checkpoint_dir(self) -> Path:
        return self.data_dir / "checkpoints" / f"experiment-{self.experiment_id}"

    def _checkpoint(self) -> None:
        """Write the training state to a file, then record it (a crash between the two loses nothing)."""
        learner = self.learner
        teacher_rng: np.random.Generator | None = getattr(self.teacher, "rng", None)
        state = {
            "version": CHECKPOINT_VERSION,
            "config": learner.config.to_dict(),
            "ppo": learner.ppo.state_dict(),
            "reward_model": learner.reward_model.state_dict(),
            "rng": learner.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "teacher_rng": teacher_rng.bit_generator.state if teacher_rng is not None else None,
            "teacher_typical_return": getattr(self.teacher, "typical_return", None),
            "pool": list(learner.pool),
            "heldout": learner.heldout,
            "curve": learner.curve,
            "next_eval": learner.next_eval,
            "last_return": learner.last_return,
            "labels_used": len(learner.labeled),
            "wall_seconds": learner.wall_seconds,
        }
        folder = self._checkpoint_dir()
        folder.mkdir(parents=True, exist_ok=True)
        name = f"step-{learner.ppo.timesteps:010d}-labels-{len(learner.labeled):06d}.pt"
        scratch = folder / f".{name}.{os.getpid()}.tmp"
        torch.save(state, scratch)
        os.replace(scratch, folder / name)  # atomic: a crash never leaves a half-written checkpoint
        crud.add_checkpoint(
            self.session,
            experiment_id=self.experiment_id,
            step=learner.ppo.timesteps,
            path=str((folder / name).relative_to(self.data_dir)),
            labels_used=len(learner.labeled),
            meta={"worker": self.worker_id, "wall_seconds": learner.wall_seconds},
        )
        self.last_checkpoint = time.monotonic()
        for old in sorted(folder.glob("step-*.pt"))[: -self.options.keep_checkpoints]:
            old.unlink(missing_ok=True)

    def _resume(self) -> None:
        """Load the latest checkpoint, if any, then catch up with the labels stored since."""
        learner = self.learner
        checkpoint = crud.latest_checkpoint(self.session, experiment_id=self.experiment_id)
        path = self.data_dir / checkpoint.path if checkpoint is not None else None
        if path is not None and path.is_file():
            state = torch.load(path, map_location="cpu", weights_only=False)
            learner.ppo.load_state_dict(state["ppo"])
            learner.reward_model.load_state_dict(state["reward_model"])
            learner.rng.bit_generator.state = state["rng"]
            torch.set_rng_state(state["torch_rng"])
            teacher_rng = getattr(self.teacher, "rng", None)
            if state["teacher_rng"] is not None and teacher_rng is not None:
                teacher_rng.bit_generator.state = state["teacher_rng"]
            if hasattr(self.teacher, "typical_return"):
                self.teacher.typical_return = state["teacher_typical_return"]
            learner.pool = deque(state["pool"], maxlen=learner.config.pool_rollouts)
            learner.heldout = list(state["heldout"])
            learner.curve = list(state["curve"])
            learner.next_eval = int(state["next_eval"])
            learner.last_return = float(state["last_return"])
            learner.elapsed_before = float(state["wall_seconds"])
            logger.info("experiment %s: resumed at %s steps", self.experiment_id, learner.ppo.timesteps)
        learner.asked = crud.count_pairs_asked(self.session, experiment_id=self.experiment_id)
        labels = self._all_labels()
        used = checkpoint.labels_used if checkpoint is not None and path is not None and path.is_file() else 0
        if labels and len(labels) != used:
            learner.fit(labels)
        else:
            learner.labeled = labels


def run_worker(
    settings: Settings,
    options: WorkerOptions | None = None,
    stop: StopFlag | None = None,
    worker_id: str | None = None,
    exit_when_idle: bool = False,
) -> int:
    """Serve experiments that need work until stopped; between experiments, render clips.

    Args:
        settings: where the database and data folder are.
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
    engine = make_engine(settings)
    session_factory = make_session_factory(engine)
    logger.info("worker %s started", worker_id)
    try:
        while not stop.requested:
            with session_factory() as session:
                waiting = [e.id for e in crud.experiments_needing_work(session)]
                acquired = next(
                    (
                        experiment_id
                        for experiment_id in waiting
                        if crud.acquire_experiment(
                            session,
                            experiment_id=experiment_id,
                            worker_id=worker_id,
                            lease_seconds=options.lease_seconds,
                        )
                    ),
                    None,
                )
            if acquired is not None:
                ExperimentRunner(session_factory, settings.data_dir, acquired, worker_id, options, stop).run()
                continue
            done = process_clip_jobs(
                session_factory, settings.clip_dir, limit=options.clip_jobs_per_poll, worker_id=worker_id
            )
            if exit_when_idle and not waiting and not done:
                break
            if not done:
                time.sleep(options.poll_seconds)
    finally:
        engine.dispose()
    logger.info("worker %s stopped", worker_id)
    return 0

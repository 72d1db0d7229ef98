"""Christiano et al.'s loop, headless: collect segments → a teacher compares pairs → fit the reward model →
PPO on the learned reward → repeat. Evaluation always uses the environment's TRUE reward, which the learner
never sees.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worker.config import RunConfig
from worker.device import pick_device, use_one_cpu_thread
from worker.envs import describe_env
from worker.exploration import StateEntropyBonus
from worker.metrics import MetricsLogger, plot_curve
from worker.pairs import labels_rank_by_ending, select_pairs, tie_record
from worker.ppo import PPO, Rollout
from worker.reward_model import RewardEnsemble
from worker.segments import cut_segments, observation_changes
from worker.teachers import Teacher, make_teacher
from worker.types import LabeledPair, Segment

# Segments per rollout set aside, never queried, to measure how well learned sums track true sums.
HELDOUT_PER_ROLLOUT = 4
HELDOUT_MAX = 400
# Rollouts are cut into segments once they add up to this many segment lengths per env.
SEGMENTS_PER_CHUNK = 2
# The labels after the initial share are asked in about this many batches.
QUERY_BATCHES = 10
# Bump when the checkpoint's content changes, so an old file is refused with a clear message.
CHECKPOINT_VERSION = 2


def labels_due(config: RunConfig, timesteps: int) -> int:
    """Cumulative labels the schedule asks for once `timesteps` env steps are done.

    None are due during the exploration steps. Then a share `initial_label_fraction` comes at once (about the
    explored or initial policy's behaviour); the rest follows a hyperbolic curve x(1+c)/(1+cx) whose rate decays
    16-fold, reaching the full budget at `label_schedule_end` of the run.
    """
    explored = config.exploration_steps or 0
    if timesteps < explored:
        return 0
    initial = round(config.labels * config.initial_label_fraction)
    span = max(1.0, config.label_schedule_end * config.timesteps - explored)
    progress = min(1.0, (timesteps - explored) / span)
    decay = 3.0
    share = progress * (1 + decay) / (1 + decay * progress)
    return min(config.labels, initial + math.floor((config.labels - initial) * share + 1e-9))


@dataclass
class RunResult:
    """What a finished run leaves: the metrics.json content, the learner and its teacher."""

    metrics: dict
    learner: Learner
    teacher: Teacher


def learned_rewards(model: RewardEnsemble, rollout: Rollout) -> np.ndarray:
    """(T, N) the model's rewards for a rollout's steps, each seen with its change of observation where the next
    observation is of the same episode."""
    over = rollout.terminated | rollout.truncated
    changes = observation_changes(rollout.obs, rollout.valid & ~over)
    return model.rewards(rollout.obs, rollout.actions, rollout.terminated, changes)


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation, NaN when either side is constant."""
    if len(x) < 2 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


# Asks for labels on the chosen (P, 2) index pairs into the candidates; returns every label so far.
LabelSource = Callable[[list[Segment], np.ndarray], list[LabeledPair]]


class Learner:
    """The state of one RLHF run and its step: the one training loop for `run()` and the database worker.

    `step(ask)` collects a rollout with the current policy, cuts it into segments for the query pool, chooses
    the pairs the schedule says are due and asks `ask` to label them, refits the reward model on all labels so
    far, and makes one PPO update on the learned reward. Where labels come from (a teacher in this process, or
    raters and the oracle through the database) is the caller's business.

    Attributes:
        config: the resolved run config.
        ppo: the policy learner (its `timesteps` is the run's progress).
        reward_model: the reward ensemble.
        rng: numpy randomness for segment cutting and pair selection.
        labeled: every label so far, in the order their pairs were asked.
        asked: pairs asked so far (labels plus pairs still waiting for an answer).
        curve: evaluation points on the true reward.
    """

    def __init__(self, config: RunConfig) -> None:
        config = config.resolved()
        self.config = config
        self.started = time.perf_counter()
        self.device = pick_device(config.device)
        use_one_cpu_thread()
        torch.manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        spaces = describe_env(config.env_id)
        assert config.ppo is not None  # resolved() fills it
        self.ppo_config = config.ppo
        self.ppo = PPO(config.env_id, self.ppo_config, config.timesteps, config.seed, self.device)
        self.reward_model = RewardEnsemble(
            spaces.obs_shape[0],
            spaces.num_actions if spaces.discrete else spaces.action_shape[0],
            spaces.discrete,
            config.reward_model,
            self.device,
            config.seed,
            terminal_weight=config.segment_length / 2,
        )
        self.logger = MetricsLogger()
        self.exploration = StateEntropyBonus(spaces.obs_shape[0])
        self.pool: deque[list[Segment]] = deque(maxlen=config.pool_rollouts)
        # Segments that reach an episode's end are rare once the policy is good, and they carry most of the
        # information (see worker/pairs.py): those of chunks leaving the pool stay queryable here a while longer.
        self.rare: deque[Segment] = deque(maxlen=config.segments_per_rollout)
        self.heldout: list[Segment] = []
        self.unsegmented: list[Rollout] = []
        self.labeled: list[LabeledPair] = []
        self.beat_chance = True  # whether the last refit's model beat chance on held-out labels (see fit)
        self.asked = 0
        self.curve: list[dict[str, float]] = []
        self.query_batch = max(1, math.ceil(config.labels / QUERY_BATCHES))
        self.next_eval = 0
        # (timesteps, PPO.policy_state()) along the run, for keep_best_policy.
        self.snapshots: list[tuple[int, dict]] = []
        self.next_snapshot = 0
        self.chosen_policy: dict[str, Any] = {}
        self.last_return = float("nan")
        self.elapsed_before = 0.0  # wall seconds of earlier processes, for a resumed run

    @property
    def done(self) -> bool:
        return self.ppo.timesteps >= self.config.timesteps

    @property
    def exploring(self) -> bool:
        """Still in the unsupervised pre-training that comes before the first query."""
        return self.ppo.timesteps < (self.config.exploration_steps or 0)

    @property
    def wall_seconds(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    @property
    def candidates(self) -> list[Segment]:
        """The query pool: segments of the last `pool_rollouts` chunks, and the rare ones kept from older chunks."""
        return [segment for batch in self.pool for segment in batch] + list(self.rare)

    def evaluate(self) -> dict[str, float]:
        """Score the deterministic policy on the true reward; the point is appended to `curve`.

        Returns:
            The point, under the names the worker stores its metric series by: env/timesteps, env/true_return,
            env/true_return_std, labels/count, reward/val_accuracy (NaN before the first fit),
            time/wall_seconds.
        """
        mean, std = self.ppo.evaluate(self.config.eval_episodes, seed=self.config.seed + 10_000)
        self.last_return = mean
        point = {
            "env/timesteps": float(self.ppo.timesteps),
            "env/true_return": mean,
            "env/true_return_std": std,
            "labels/count": float(len(self.labeled)),
            "reward/val_accuracy": self.reward_model.validation_accuracy,
            "time/wall_seconds": self.wall_seconds,
        }
        self.curve.append(point)
        self.logger.record("env/true_return", mean)
        return point

    def labels_wanted(self) -> int:
        """How many new pairs to ask about now: 0 until a query batch is due and the pool has two segments."""
        config = self.config
        if config.true_reward:
            return 0
        scheduled = labels_due(config, self.ppo.timesteps)
        due = scheduled - self.asked
        # Ask in batches: each batch refits the reward model, the costliest step of the loop.
        batch_ready = due >= self.query_batch or (due > 0 and scheduled == config.labels)
        return due if batch_ready and len(self.candidates) >= 2 else 0

    def choose_pairs(self, count: int) -> np.ndarray:
        """(≤ count, 2) indices into `candidates` of the pairs to ask about now (fewer when the rest would tie)."""
        model = self.reward_model if self.labeled else None
        ties = tie_record(self.labeled)
        return select_pairs(self.candidates, count, self.config.query, self.rng, model, ties)

    def fit(self, labeled: list[LabeledPair]) -> None:
        """Refit the reward model on all labels so far (skips dropped) and re-anchor its normalization."""
        self.labeled = labeled
        if not labeled:
            return
        self.logger.record_many(self.reward_model.fit(labeled))
        # Anchoring on the ended state makes every step alive worth its difference from "over", which in a task
        # like CartPole solves it whatever the labels said, even random ones: anchor only when the answers
        # themselves show that ending matters.
        anchor = labels_rank_by_ending(labeled)
        # Answers that lean on ending are evidence enough; otherwise the model must predict held-out labels, on
        # this refit and the one before: a run refits about ten times, and a coin's labels beat chance by two
        # standard errors on one of them in 4 of 10 random-teacher runs.
        beat_chance_before, self.beat_chance = self.beat_chance, self.reward_model.beats_chance
        held_out = self.beat_chance and beat_chance_before
        trusted = anchor or held_out
        self.logger.record("reward/trusted_by", 2.0 if anchor else 1.0 if held_out else 0.0)
        self.reward_model.set_normalization(self.candidates, anchor_on_ended=anchor, trusted=trusted)

    def step(self, ask: LabelSource) -> dict[str, float]:
        """One iteration: maybe evaluate, collect a rollout, ask and fit when labels are due, one PPO update.

        Args:
            ask: called as ask(candidates, pairs) with the (P, 2) pairs chosen when labels are due; returns all
                labels so far.

        Returns:
            The iteration's metrics (namespaced keys, e.g. `ppo/approx_kl`, `labels/count`).
        """
        config = self.config
        if self.ppo.timesteps >= self.next_eval:
            self.evaluate()
            self.next_eval += config.eval_every
        rollout = self.ppo.collect()
        rewards = None
        learn = True
        if not config.true_reward:
            self._add_to_pool(rollout)
            if self.exploring:
                rewards = self.exploration.rewards(rollout.obs, rollout.valid)
            else:
                count = self.labels_wanted()
                pairs = self.choose_pairs(count) if count else np.zeros((0, 2), dtype=np.int64)
                if len(pairs):
                    self.asked += len(pairs)
                    self.fit(ask(self.candidates, pairs))
                self.logger.record("labels/deferred", float(count - len(pairs)))
                if self.reward_model.trusted:
                    rewards = learned_rewards(self.reward_model, rollout)
                elif config.explore_until_trusted:
                    rewards = self.exploration.rewards(rollout.obs, rollout.valid)
                else:
                    # An untrusted model's zero reward carries nothing to learn, and PPO's normalized advantages
                    # would turn its value errors into a random walk of the policy (a random-teacher run wandered
                    # 364 -> 107 -> 500 before its model was ever trusted).
                    learn = False
        if learn:
            self.logger.record_many(self.ppo.update(rollout, rewards))
        self.logger.record("labels/count", len(self.labeled))
        self._snapshot_policy()
        return self.logger.dump(self.ppo.timesteps)

    def _snapshot_policy(self) -> None:
        config = self.config
        if config.true_reward or not config.policy_snapshots or not self.labeled:
            return
        if self.ppo.timesteps >= self.next_snapshot:
            self.snapshots.append((self.ppo.timesteps, self.ppo.policy_state()))
            self.next_snapshot = self.ppo.timesteps + config.timesteps // config.policy_snapshots

    def keep_best_policy(self) -> None:
        """End with the snapshot (or the last policy) whose deterministic episodes score best on the final
        learned reward, undiscounted; ties go to the later one.

        Why: PPO maximises the *discounted* learned return (gamma 0.99 looks ~100 steps ahead), so a small
        error in the learned reward that pays, say, 5% more per step for drifting the cart becomes worth a
        termination 300 steps later, and a policy that balanced for the whole episode drifts off the track late
        in the run (the late collapses of bench/label_efficiency.py's failing CartPole seeds: every failed
        episode ended with the cart out, none with the pole down). The same reward summed over whole episodes
        still ranks staying above drifting, so it picks the policy. The episodes start from states (seed + 20000)
        other than the true-reward evaluation's, and only the learned reward decides.
        """
        config = self.config
        if config.true_reward or not self.snapshots or not self.reward_model.trusted:
            return
        candidates = list(self.snapshots)
        if candidates[-1][0] != self.ppo.timesteps:  # the last policy, unless the last snapshot is of it
            candidates.append((self.ppo.timesteps, self.ppo.policy_state()))
        scores = []
        for _timesteps, policy in candidates:
            self.ppo.load_policy_state(policy)
            returns = self.ppo.episode_returns(config.eval_episodes, config.seed + 20_000, self.reward_model.rewards)
            scores.append(float(returns.mean()))
        best = max(range(len(candidates)), key=lambda i: (scores[i], i))
        self.ppo.load_policy_state(candidates[best][1])
        self.chosen_policy = {
            "timesteps": candidates[best][0],
            "candidates": [
                {"timesteps": timesteps, "learned_return": score}
                for (timesteps, _), score in zip(candidates, scores, strict=True)
            ],
        }

    def _add_to_pool(self, rollout: Rollout) -> None:
        config = self.config
        self.unsegmented.append(rollout)
        # Short rollouts (CartPole's are 32 steps) are joined until a chunk holds several segments' length.
        if sum(r.obs.shape[0] for r in self.unsegmented) < SEGMENTS_PER_CHUNK * config.segment_length:
            return
        obs, actions, true_rewards, terminated, truncated, valid = join_rollouts(self.unsegmented)
        segments = cut_segments(
            obs,
            actions,
            true_rewards,
            terminated,
            truncated,
            valid,
            config.segment_length,
            config.segments_per_rollout + HELDOUT_PER_ROLLOUT,
            self.rng,
            config.env_id,
            states=join_states(self.unsegmented),
        )
        self.unsegmented.clear()
        self.rng.shuffle(segments)  # type: ignore[arg-type]
        if len(self.heldout) < HELDOUT_MAX:
            self.heldout.extend(segments[:HELDOUT_PER_ROLLOUT])
        if len(self.pool) == self.pool.maxlen:
            self.rare.extend(segment for segment in self.pool[0] if segment.ended.any())
        self.pool.append(segments[HELDOUT_PER_ROLLOUT:])

    def progress_info(self) -> dict[str, float]:
        return {
            "labels/count": float(len(self.labeled)),
            "env/timesteps": float(self.ppo.timesteps),
            "reward/val_accuracy": self.reward_model.validation_accuracy,
            "env/true_return": self.last_return,
        }

    # ---- persistence ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to go on as this one would have (not the envs' open episodes)."""
        return {
            "config": self.config.to_dict(),
            "ppo": self.ppo.state_dict(),
            "reward_model": self.reward_model.state_dict(),
            "rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "pool": list(self.pool),
            "rare": list(self.rare),
            "exploration": self.exploration.state_dict(),
            "heldout": self.heldout,
            "unsegmented": self.unsegmented,
            "labeled": self.labeled,
            "asked": self.asked,
            "beat_chance": self.beat_chance,
            "curve": self.curve,
            "next_eval": self.next_eval,
            "snapshots": self.snapshots,
            "next_snapshot": self.next_snapshot,
            "last_return": self.last_return,
            "wall_seconds": self.wall_seconds,
            "history": self.logger.rows,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict()` saved into a learner built with the same config."""
        self.ppo.load_state_dict(state["ppo"])
        self.reward_model.load_state_dict(state["reward_model"])
        self.rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        self.pool = deque(state["pool"], maxlen=self.config.pool_rollouts)
        self.rare = deque(state["rare"], maxlen=self.config.segments_per_rollout)
        self.exploration.load_state_dict(state["exploration"])
        self.heldout = list(state["heldout"])
        self.unsegmented = list(state["unsegmented"])
        self.labeled = list(state["labeled"])
        self.asked = int(state["asked"])
        self.beat_chance = bool(state.get("beat_chance", True))
        self.curve = list(state["curve"])
        self.next_eval = int(state["next_eval"])
        self.snapshots = list(state.get("snapshots", []))  # checkpoints from before snapshots have none
        self.next_snapshot = int(state.get("next_snapshot", 0))
        self.last_return = float(state["last_return"])
        self.elapsed_before = float(state["wall_seconds"])
        self.started = time.perf_counter()
        self.logger.rows = list(state["history"])

    def finish(self, teacher: Teacher) -> RunResult:
        """Keep the best policy by learned reward, evaluate it once more and assemble the run's metrics."""
        config = self.config
        self.keep_best_policy()
        self.evaluate()
        labeled = self.labeled
        correlation = float("nan")
        if self.heldout and labeled:
            learned = self.reward_model.segment_sums(self.heldout).mean(0)
            correlation = pearson(learned, np.array([s.true_return for s in self.heldout]))
        final = self.curve[-1]
        metrics = {
            "env": config.env_id,
            "seed": config.seed,
            "teacher": config.teacher,
            "query": config.query,
            "true_reward": config.true_reward,
            "labels_used": len(labeled),
            "choices": {c: sum(p.choice == c for p in labeled) for c in ("left", "right", "equal", "skip")},
            "timesteps": self.ppo.timesteps,
            "wall_seconds": self.wall_seconds,
            "device": str(self.device),
            "final_true_return": final["env/true_return"],
            "final_true_return_std": final["env/true_return_std"],
            "reward/val_accuracy": self.reward_model.validation_accuracy,
            "reward_correlation": correlation,
            "chosen_policy": self.chosen_policy,
            "reward_trusted": self.reward_model.trusted,
            "curve": self.curve,
            "config": config.to_dict(),
            "ppo_config": asdict(self.ppo_config),
            "history": self.logger.rows,
        }
        return RunResult(metrics=metrics, learner=self, teacher=teacher)


def run(config: RunConfig, progress: Callable[[dict[str, float]], None] | None = None) -> RunResult:
    """Run one experiment with a synthetic teacher, in this process.

    Args:
        config: the run's settings (env-dependent defaults are filled in here).
        progress: called after every PPO iteration with labels, timesteps, reward accuracy and last true return.
    """
    learner = Learner(config)
    config = learner.config
    teacher = make_teacher(config.teacher, np.random.default_rng(config.seed + 1), config.teacher_params)

    def ask(candidates: list[Segment], pairs: np.ndarray) -> list[LabeledPair]:
        # Labels here are never removed: each one's key is its position.
        return learner.labeled + ask_teacher(teacher, candidates, pairs, first_key=len(learner.labeled))

    while not learner.done:
        learner.step(ask)
        if progress:
            progress(learner.progress_info())
    return learner.finish(teacher)


def join_rollouts(
    rollouts: list[Rollout],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Consecutive rollouts of the same envs joined along time: obs, actions, true_rewards, terminated,
    truncated, valid, each (sum of T, N, ...)."""
    def joined(name: str) -> np.ndarray:
        return np.concatenate([getattr(r, name) for r in rollouts])

    return (joined("obs"), joined("actions"), joined("true_rewards"), joined("terminated"), joined("truncated"),
            joined("valid"))


def join_states(rollouts: list[Rollout]) -> np.ndarray | None:
    """The rollouts' MuJoCo physics states joined along time (sum of T, N, state_dim); None for other envs."""
    if any(r.states is None for r in rollouts):
        return None
    return np.concatenate([r.states for r in rollouts])  # type: ignore[misc]


def ask_teacher(teacher: Teacher, candidates: list[Segment], indices: np.ndarray, first_key: int) -> list[LabeledPair]:
    """Have the teacher answer the (P, 2) index pairs into the candidates; keys count from `first_key`."""
    pairs = [(candidates[i], candidates[j]) for i, j in indices]
    choices = teacher.answer(pairs)
    return [
        LabeledPair(left, right, choice, first_key + i)
        for i, ((left, right), choice) in enumerate(zip(pairs, choices, strict=True))
    ]


# ---- results on disk ------------------------------------------------------------------------------------
def save_checkpoint(path: Path, learner: Learner, teacher: Teacher | None = None) -> None:
    """Write the learner's (and teacher's) whole state to `path`, atomically: a crash never leaves half a file."""
    state = {
        "version": CHECKPOINT_VERSION,
        "learner": learner.state_dict(),
        "teacher": teacher.state_dict() if teacher is not None else None,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, scratch)
    os.replace(scratch, path)


def load_checkpoint(
    path: Path, teacher: Teacher | None = None, config: RunConfig | None = None, device: str | None = None
) -> Learner:
    """A learner restored from a `save_checkpoint` file; the teacher's state is loaded into `teacher` if given.

    Args:
        path: the checkpoint file.
        teacher: receives the saved teacher state (when the file has one).
        config: the run's config, when the caller holds a newer one (e.g. a changed budget); else the file's.
        device: a torch device to use instead of the config's.
    """
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("version") != CHECKPOINT_VERSION:
        raise ValueError(
            f"{path}: checkpoint format {state.get('version')}, this version reads {CHECKPOINT_VERSION}; rerun it"
        )
    config = config or RunConfig.from_dict(state["learner"]["config"])
    if device is not None:
        config = replace(config, device=device)
    learner = Learner(config)
    learner.load_state_dict(state["learner"])
    if teacher is not None and state["teacher"] is not None:
        teacher.load_state_dict(state["teacher"])
    return learner


def save_run(result: RunResult, out_dir: Path) -> None:
    """Write OUT/metrics.json, OUT/curve.png and OUT/checkpoint.pt."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(_finite(result.metrics), indent=2))
    config = result.learner.config
    title = f"{config.env_id}, teacher={config.teacher}, seed={config.seed}"
    if config.true_reward:
        title += " (true reward)"
    plot_curve(result.metrics["curve"], out_dir / "curve.png", title)
    save_checkpoint(out_dir / "checkpoint.pt", result.learner, result.teacher)


def _finite(value):
    """JSON has no NaN: write null instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value

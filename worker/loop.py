"""Christiano et al.'s loop, headless: collect segments → a teacher compares pairs → fit the reward model →
PPO on the learned reward → repeat. Evaluation always uses the environment's TRUE reward, which the learner
never sees.
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from worker.config import RunConfig
from worker.device import pick_device, use_one_cpu_thread
from worker.envs import describe_env
from worker.metrics import MetricsLogger, plot_curve
from worker.pairs import select_pairs
from worker.ppo import PPO, PPOConfig, Rollout, default_ppo_config
from worker.reward_model import RewardEnsemble
from worker.segments import cut_segments
from worker.teachers import make_teacher
from worker.types import LabeledPair, Segment

# Segments per rollout set aside, never queried, to measure how well learned sums track true sums.
HELDOUT_PER_ROLLOUT = 4
HELDOUT_MAX = 400
# Rollouts are cut into segments once they add up to this many segment lengths per env.
SEGMENTS_PER_CHUNK = 2
# The labels after the initial share are asked in about this many batches.
QUERY_BATCHES = 10


def labels_due(config: RunConfig, timesteps: int) -> int:
    """Cumulative labels the schedule asks for once `timesteps` env steps are done.

    A share `initial_label_fraction` comes at once (about the initial policy's behaviour); the rest follows a
    hyperbolic curve x(1+c)/(1+cx) whose rate decays 16-fold, reaching the full budget at
    `label_schedule_end` of the run.
    """
    initial = round(config.labels * config.initial_label_fraction)
    progress = min(1.0, timesteps / max(1.0, config.label_schedule_end * config.timesteps))
    decay = 3.0
    share = progress * (1 + decay) / (1 + decay * progress)
    return min(config.labels, initial + math.floor((config.labels - initial) * share + 1e-9))


@dataclass
class RunResult:
    """What a finished run leaves: the metrics.json content and the trained parts."""

    metrics: dict
    ppo: PPO
    reward_model: RewardEnsemble
    config: RunConfig


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation, NaN when either side is constant."""
    if len(x) < 2 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def run(config: RunConfig, progress: Callable[[dict[str, float]], None] | None = None) -> RunResult:
    """Run one experiment with a synthetic teacher, in this process.

    Args:
        config: the run's settings (env-dependent defaults are filled in here).
        progress: called after every PPO iteration with labels, timesteps, reward accuracy and last true return.
    """
    config = config.resolved()
    started = time.perf_counter()
    device = pick_device(config.device)
    use_one_cpu_thread()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)

    spaces = describe_env(config.env_id)
    ppo_config = default_ppo_config(config.env_id)
    ppo = PPO(config.env_id, ppo_config, config.timesteps, config.seed, device)
    teacher = make_teacher(config.teacher, np.random.default_rng(config.seed + 1), config.teacher_params)
    reward_model = RewardEnsemble(
        spaces.obs_shape[0],
        spaces.num_actions if spaces.discrete else spaces.action_shape[0],
        spaces.discrete,
        config.reward_model,
        device,
        config.seed,
    )
    logger = MetricsLogger()
    pool: deque[list[Segment]] = deque(maxlen=config.pool_rollouts)
    heldout: list[Segment] = []
    unsegmented: list[Rollout] = []
    labeled: list[LabeledPair] = []
    curve: list[dict[str, float]] = []
    query_batch = max(1, math.ceil(config.labels / QUERY_BATCHES))
    next_eval = 0
    last_return = float("nan")

    def evaluate() -> None:
        nonlocal last_return
        mean, std = ppo.evaluate(config.eval_episodes, seed=config.seed + 10_000)
        last_return = mean
        point = {
            "labels": len(labeled),
            "timesteps": ppo.timesteps,
            "true_return": mean,
            "true_return_std": std,
            "reward_accuracy": reward_model.validation_accuracy,
            "wall_seconds": time.perf_counter() - started,
        }
        curve.append(point)
        logger.record("env/true_return", mean)

    while ppo.timesteps < config.timesteps:
        if ppo.timesteps >= next_eval:
            evaluate()
            next_eval += config.eval_every
        rollout = ppo.collect()
        rewards = None
        if not config.true_reward:
            unsegmented.append(rollout)
            # Short rollouts (CartPole's are 32 steps) are joined until a chunk holds several segments' length.
            if sum(r.obs.shape[0] for r in unsegmented) >= SEGMENTS_PER_CHUNK * config.segment_length:
                segments = cut_segments(
                    *join_rollouts(unsegmented),
                    config.segment_length,
                    config.segments_per_rollout + HELDOUT_PER_ROLLOUT,
                    rng,
                    config.env_id,
                )
                unsegmented.clear()
                rng.shuffle(segments)  # type: ignore[arg-type]
                if len(heldout) < HELDOUT_MAX:
                    heldout.extend(segments[:HELDOUT_PER_ROLLOUT])
                pool.append(segments[HELDOUT_PER_ROLLOUT:])
            scheduled = labels_due(config, ppo.timesteps)
            due = scheduled - len(labeled)
            candidates = [segment for batch in pool for segment in batch]
            # Ask in batches: each batch refits the reward model, the costliest step of the loop.
            batch_ready = due >= query_batch or (due > 0 and scheduled == config.labels)
            if batch_ready and len(candidates) >= 2:
                labeled += ask_teacher(teacher, candidates, due, config.query, rng, reward_model, bool(labeled))
                logger.record_many(reward_model.fit(labeled))
                ends_seen = any(s.ended.any() for p in labeled for s in (p.left, p.right))
                reward_model.set_normalization(candidates, anchor_on_ended=ends_seen)
            rewards = reward_model.rewards(rollout.obs, rollout.actions)
        logger.record_many(ppo.update(rollout, rewards))
        logger.record("labels/count", len(labeled))
        logger.dump(ppo.timesteps)
        if progress:
            progress(
                {
                    "labels": len(labeled),
                    "timesteps": ppo.timesteps,
                    "reward_accuracy": reward_model.validation_accuracy,
                    "true_return": last_return,
                }
            )
    evaluate()

    correlation = float("nan")
    if heldout and labeled:
        learned = reward_model.segment_sums(heldout).mean(0)
        correlation = pearson(learned, np.array([s.true_return for s in heldout]))
    final = curve[-1]
    metrics = {
        "env": config.env_id,
        "seed": config.seed,
        "teacher": config.teacher,
        "query": config.query,
        "true_reward": config.true_reward,
        "labels_used": len(labeled),
        "choices": {c: sum(p.choice == c for p in labeled) for c in ("left", "right", "equal", "skip")},
        "timesteps": ppo.timesteps,
        "wall_seconds": time.perf_counter() - started,
        "device": str(device),
        "final_true_return": final["true_return"],
        "final_true_return_std": final["true_return_std"],
        "reward_model_accuracy": reward_model.validation_accuracy,
        "reward_correlation": correlation,
        "curve": curve,
        "config": config.to_dict(),
        "ppo_config": asdict(ppo_config),
        "history": logger.rows,
    }
    return RunResult(metrics=metrics, ppo=ppo, reward_model=reward_model, config=config)


def join_rollouts(rollouts: list[Rollout]) -> tuple[np.ndarray, ...]:
    """Consecutive rollouts of the same envs joined along time: obs, actions, true_rewards, terminated,
    truncated, valid, each (sum of T, N, ...)."""
    fields = ("obs", "actions", "true_rewards", "terminated", "truncated", "valid")
    return tuple(np.concatenate([getattr(r, name) for r in rollouts]) for name in fields)


def ask_teacher(
    teacher,
    candidates: list[Segment],
    count: int,
    query: str,
    rng: np.random.Generator,
    reward_model: RewardEnsemble,
    model_trained: bool,
) -> list[LabeledPair]:
    """Choose `count` pairs from the candidates and have the teacher answer them."""
    indices = select_pairs(candidates, count, query, rng, reward_model if model_trained else None)
    pairs = [(candidates[i], candidates[j]) for i, j in indices]
    choices = teacher.answer(pairs)
    return [LabeledPair(left, right, choice) for (left, right), choice in zip(pairs, choices, strict=True)]


# ---- results on disk ------------------------------------------------------------------------------------
def save_run(result: RunResult, out_dir: Path) -> None:
    """Write OUT/metrics.json, OUT/curve.png and OUT/checkpoint.pt."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(_finite(result.metrics), indent=2))
    title = f"{result.config.env_id}, teacher={result.config.teacher}, seed={result.config.seed}"
    if result.config.true_reward:
        title += " (true reward)"
    plot_curve(result.metrics["curve"], out_dir / "curve.png", title)
    torch.save(
        {
            "config": result.config.to_dict(),
            "ppo_config": asdict(result.ppo.config),
            "policy": result.ppo.state_dict(),
            "reward_model": result.reward_model.state_dict(),
        },
        out_dir / "checkpoint.pt",
    )


def load_policy(out_dir: Path, device: str = "auto") -> tuple[RunConfig, PPO]:
    """The config and trained policy of a saved run."""
    checkpoint = torch.load(out_dir / "checkpoint.pt", map_location="cpu", weights_only=False)
    config = RunConfig.from_dict(checkpoint["config"])
    ppo = PPO(config.env_id, PPOConfig(**checkpoint["ppo_config"]), config.timesteps, config.seed, pick_device(device))
    ppo.load_state_dict(checkpoint["policy"])
    return config, ppo


def _finite(value):
    """JSON has no NaN: write null instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value

"""The true-reward baseline: PPO trained on the env's own reward, the upper bound an RLHF run is compared with.

Used by the learning test of `worker.ppo`; the RLHF loop (`worker.loop`) drives `PPO` itself, one step at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from worker.config import PPOConfig
from worker.env_settings import ppo_settings_for
from worker.ppo import PPO


@dataclass(frozen=True)
class EvalPoint:
    """One evaluation during training: env steps so far, training wall seconds so far, true return mean/std."""

    timesteps: int
    train_wall_s: float
    mean_return: float
    std_return: float


@dataclass
class TrainResult:
    """What `train_true_reward` returns.

    Attributes:
        ppo: the trained learner (envs still open; call `ppo.close()` when done).
        evals: evaluations in order, the last one at the end of training.
        train_wall_s: wall seconds spent in collect() and update() (evaluation excluded).
    """

    ppo: PPO
    evals: list[EvalPoint]
    train_wall_s: float

    def first_reaching(self, threshold: float) -> EvalPoint | None:
        """The first evaluation with mean return >= threshold, or None."""
        return next((e for e in self.evals if e.mean_return >= threshold), None)

    @property
    def final(self) -> EvalPoint:
        return self.evals[-1]


def train_true_reward(
    env_id: str,
    total_timesteps: int,
    seed: int,
    device: torch.device,
    config: PPOConfig | None = None,
    eval_every: int | None = None,
    progress: Callable[[int, dict[str, float]], None] | None = None,
    eval_episodes: int = 20,
) -> TrainResult:
    """PPO on the env's own reward: the upper-bound baseline for `rlhf run --true-reward`.

    Args:
        env_id: a registered Gymnasium id.
        total_timesteps: env steps to train for (rounded up to whole rollouts).
        seed: seed for envs, networks and sampling.
        device: torch device for the networks.
        config: hyperparameters; `ppo_settings_for(env_id)` when None.
        eval_every: evaluate the deterministic policy about every this many env steps (at the first rollout
            boundary past each multiple), and always at the end; None: only at the end.
        progress: called after every update with (timesteps, metrics), metrics including "env/episode_return"
            (mean over episodes finished in the rollout, when any) and "env/true_return" after an evaluation.
        eval_episodes: episodes per evaluation.

    Returns:
        The trained learner and its evaluation history.
    """
    cfg = config if config is not None else ppo_settings_for(env_id)
    ppo = PPO(env_id, cfg, total_timesteps, seed, device)
    evals: list[EvalPoint] = []
    train_wall = 0.0
    next_eval = eval_every if eval_every else None
    while ppo.timesteps < total_timesteps:
        t0 = time.perf_counter()
        rollout = ppo.collect()
        metrics = ppo.update(rollout)
        train_wall += time.perf_counter() - t0
        if rollout.episode_returns:
            metrics["env/episode_return"] = float(np.mean(rollout.episode_returns))
        done = ppo.timesteps >= total_timesteps
        if done or (next_eval is not None and ppo.timesteps >= next_eval):
            mean, std = ppo.evaluate(eval_episodes)
            evals.append(EvalPoint(ppo.timesteps, train_wall, mean, std))
            metrics["env/true_return"] = mean
            while next_eval is not None and eval_every and next_eval <= ppo.timesteps:
                next_eval += eval_every
        if progress is not None:
            progress(ppo.timesteps, metrics)
    return TrainResult(ppo=ppo, evals=evals, train_wall_s=train_wall)

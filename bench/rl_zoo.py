"""rl-zoo3's PPO hyperparameters for CartPole-v1 (hyperparams/ppo.yml), the one copy the benchmarks share.

No imports, so the imitation reference venv (bench/setup_reference.sh) can load it as well as ours.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

CARTPOLE_N_ENVS = 8
# learning_rate and clip_range are rl-zoo3's lin_1e-3 and lin_0.2: they decay linearly to 0 over training.
CARTPOLE_PPO: dict[str, float] = {
    "n_steps": 32,
    "batch_size": 256,
    "gae_lambda": 0.8,
    "gamma": 0.98,
    "n_epochs": 20,
    "ent_coef": 0.0,
    "learning_rate": 1e-3,
    "clip_range": 0.2,
}


def sb3_cartpole_kwargs(linear: Callable[[float], Any]) -> dict[str, Any]:
    """Keyword arguments for stable-baselines3's PPO; `linear(start)` makes the decaying schedules."""
    kwargs: dict[str, Any] = dict(CARTPOLE_PPO)
    kwargs["learning_rate"] = linear(CARTPOLE_PPO["learning_rate"])
    kwargs["clip_range"] = linear(CARTPOLE_PPO["clip_range"])
    return kwargs

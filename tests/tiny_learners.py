"""A CartPole learner small enough for the fast tier: a few 16-step rollouts of 4 envs, one epoch per update.
Imported by name (`from tiny_learners import tiny_learner`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from worker.config import PPOConfig, RunConfig
from worker.loop import Learner
from worker.types import Segment

SEGMENT_LENGTH = 10


def tiny_learner(**overrides: Any) -> Learner:
    """The learner, with any RunConfig field given in `overrides`."""
    config = RunConfig(
        **{
            "env_id": "CartPole-v1",
            "labels": 20,
            "timesteps": 2048,
            "segment_length": SEGMENT_LENGTH,
            "segments_per_rollout": 8,
            "pool_rollouts": 2,
            "ppo": PPOConfig(num_envs=4, num_steps=16, update_epochs=1, num_minibatches=1),
            "device": "cpu",
            **overrides,
        }
    )
    return Learner(config)


def alive_segment(value: float) -> Segment:
    """A CartPole segment that never ends, every observation `value`."""
    length = SEGMENT_LENGTH
    return Segment(np.full((length, 4), value, np.float32), np.zeros(length, np.int64), np.ones(length, np.float32),
                   np.zeros(length, bool))

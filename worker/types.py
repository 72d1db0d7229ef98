"""Data types shared by the worker's modules: frozen dataclasses and the one choice vocabulary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Choice = Literal["left", "right", "equal", "skip"]
CHOICES: tuple[Choice, ...] = ("left", "right", "equal", "skip")

# The one place a stored choice becomes a Bradley-Terry target P[left is better]; skips are not trained on.
CHOICE_TARGET: dict[Choice, float | None] = {"left": 1.0, "right": 0.0, "equal": 0.5, "skip": None}


@dataclass(frozen=True)
class Segment:
    """A fixed-length piece of one episode, as the reward model and the teachers see it.

    A segment that reaches the end of its episode (termination, not a time limit) is padded up to its length
    with an absorbing "ended" state: zero observation and action, `ended` True, zero true reward. See
    worker/segments.py.

    Attributes:
        obs: (L, obs_dim) float32 observations; zeros where `ended`.
        actions: (L, *action_shape) actions taken (int64 for discrete, float32 for continuous); zeros where
            `ended`.
        true_rewards: (L,) float32 environment rewards, 0 in the absorbing state. NaN when unknown (humans).
        ended: (L,) bool, True from the step after the episode terminated.
        env_id: the Gymnasium id the segment came from.
        start_state: (nq + nv,) float64 MuJoCo physics state (qpos then qvel) at the segment's first step, from
            which its clip is replayed with its actions; None for other envs and for segments from outside.
    """

    obs: np.ndarray
    actions: np.ndarray
    true_rewards: np.ndarray
    ended: np.ndarray
    env_id: str = ""
    start_state: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.obs.shape[0])

    @property
    def true_return(self) -> float:
        return float(self.true_rewards.sum())


@dataclass(frozen=True)
class LabeledPair:
    """Two segments and a teacher's answer about them.

    Attributes:
        key: a stable name of this label (the database's label id in the worker, a running count in `rlhf run`):
            the reward model derives the pair's train/validation split and bootstrap weights from it, so they
            do not shift when other labels are added or removed.
    """

    left: Segment
    right: Segment
    choice: Choice
    key: int | str
    meta: dict[str, float] = field(default_factory=dict)

    @property
    def target(self) -> float | None:
        """P[left is better] to train toward, or None for a skip."""
        return CHOICE_TARGET[self.choice]

"""A sparse-goal task for tests and benchmarks: a walk along a line to a goal, −1 per step until it is reached.

The agent starts near 0 and moves 0.1 left or right per step; reaching x ≥ 1.5 ends the episode, a wall stops
it at −1.5, and episodes are cut at 100 steps. The true reward is −1 on every step until the goal, so every
segment that misses the goal scores exactly the same: a random policy reaches the goal in about one episode in
eight (return about −96; going straight right takes 15 steps, return −15), and nearly all pairs of its
segments tie. What a teacher can tell apart is whether — and how soon — a segment reached the goal.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

SPARSE_GOAL_ID = "rlhf/SparseGoal-v0"
GOAL = 1.5
STEP = 0.1
HORIZON = 100


class SparseGoalEnv(gym.Env[np.ndarray, np.int64]):
    """Observation (x,), actions 0 (left) and 1 (right); −1 per step, terminated at x ≥ GOAL."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, render_mode: str | None = None) -> None:
        self.observation_space = spaces.Box(-GOAL, GOAL, shape=(1,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self.render_mode = render_mode
        self.state = np.zeros(1)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.state = self.np_random.uniform(-0.05, 0.05, size=1)
        return self.state.astype(np.float32), {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict]:
        move = STEP if int(action) == 1 else -STEP
        self.state = np.clip(self.state + move, -GOAL, GOAL)
        terminated = bool(self.state[0] >= GOAL - 1e-9)
        return self.state.astype(np.float32), -1.0, terminated, False, {}

    def render(self) -> np.ndarray:
        """A 64 × 320 picture: the line in grey, the goal in green at the right end, the agent as a red dot."""
        height, width = 64, 320
        frame = np.full((height, width, 3), 255, dtype=np.uint8)
        frame[30:34, 10:310] = 160
        frame[12:52, 306:314] = (40, 160, 60)
        centre = int(10 + (float(self.state[0]) + GOAL) / (2 * GOAL) * 300)
        rows, cols = np.ogrid[:height, :width]
        frame[(rows - 32) ** 2 + (cols - centre) ** 2 <= 64] = (200, 40, 40)
        return frame


def register_sparse_goal() -> None:
    """Make `rlhf/SparseGoal-v0` known to Gymnasium (once)."""
    if SPARSE_GOAL_ID not in gym.registry:
        gym.register(SPARSE_GOAL_ID, entry_point="worker.goal_env:SparseGoalEnv", max_episode_steps=HORIZON)

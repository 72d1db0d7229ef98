"""A user's own envs, for the tests that name them: a class, a registered id, and spaces we don't support."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class Walk(gym.Env):
    """A 1-D walk: step left or right, rewarded by how far right the walker stands; 20 steps an episode."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, render_mode: str | None = None) -> None:
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(1,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self.render_mode = render_mode
        self.position = 0.0
        self.steps = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.position, self.steps = float(self.np_random.uniform(-0.1, 0.1)), 0
        return np.array([self.position], np.float32), {}

    def step(self, action):
        self.position += 0.1 if int(action) == 1 else -0.1
        self.steps += 1
        return np.array([self.position], np.float32), self.position, False, self.steps >= 20, {}

    def render(self):
        frame = np.zeros((32, 64, 3), np.uint8)
        frame[:, int(np.clip(32 + 10 * self.position, 0, 63))] = 255
        return frame


class DictObservations(Walk):
    def __init__(self, render_mode: str | None = None) -> None:
        super().__init__(render_mode)
        self.observation_space = spaces.Dict({"position": spaces.Box(-np.inf, np.inf, shape=(1,))})

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = super().reset(seed=seed)
        return {"position": obs}, info

    def step(self, action):
        obs, *rest = super().step(action)
        return {"position": obs}, *rest


class MultiDiscreteActions(Walk):
    def __init__(self, render_mode: str | None = None) -> None:
        super().__init__(render_mode)
        self.action_space = spaces.MultiDiscrete([2, 2])

    def step(self, action):
        return super().step(int(action[0]))


NOT_AN_ENV = 42

gym.register("custom/Walk-v0", entry_point=Walk, max_episode_steps=20)

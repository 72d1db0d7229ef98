"""Orbit: a puck should circle the ring counterclockwise at an even pace — a goal you judge from a clip.

The puck slides on a square table with friction; each step the agent pushes it with a 2-D force in [-1, 1]^2.
Watching a clip, a person sees at once whether the puck goes round the dashed ring, which way, and whether it
keeps an even pace or lurches, cuts corners and stalls; writing that down as a reward means choosing how much
a wobble off the ring costs against a stall or a burst of speed, which nobody can say offhand. So this task is
taught from preferences (README: "Your own task: Orbit").

The step reward is a hidden score that stands in for such a person: only the synthetic teacher (oracle mode,
`rlhf run`) and the benchmarks read it; human raters only see clips. It is 1 on the ring at the target pace,
less by 1 for each ring radius off it and for each target pace of speed too fast, too slow or the wrong way
round (at most 2 for the pace).

    rlhf run --env examples.orbit:Orbit --labels 300     # headless, from the repository's root

Pure numpy: frames are drawn here, no rendering library needed.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

RING_RADIUS = 0.8
"""Radius of the ring the puck should follow (the table spans [-TABLE, TABLE] on both axes)."""
TABLE = 1.4
TARGET_PACE = 0.06
"""Distance along the ring per step at the target pace: a lap in about 84 steps."""
FRICTION = 0.85
"""Share of its velocity the puck keeps from one step to the next."""
PUSH = 0.02
"""Velocity a full push adds in one step (top speed PUSH / (1 - FRICTION) = 0.13 per step)."""
VELOCITY_SCALE = 10.0
"""Velocities are observed times this, so that every observation lies within about ±1.5."""
EPISODE_STEPS = 200
FRAME_SIZE = 128
TRAIL = 24
"""Past positions drawn behind the puck, so a single frame shows where it is heading."""


def hidden_score(position: np.ndarray, velocity: np.ndarray) -> float:
    """The step's score (see the module docstring): 1 at the target pace on the ring, less off it."""
    radius = float(np.hypot(*position))
    along = float(position[0] * velocity[1] - position[1] * velocity[0]) / max(radius, 1e-6)  # counterclockwise
    return 1.0 - min(2.0, abs(along - TARGET_PACE) / TARGET_PACE) - abs(radius - RING_RADIUS) / RING_RADIUS


def _pixels(points: np.ndarray) -> np.ndarray:
    """(K, 2) table coordinates -> (K, 2) integer (row, column) pixels, y up."""
    scale = (FRAME_SIZE - 1) / (2 * TABLE)
    column = np.rint((points[:, 0] + TABLE) * scale)
    row = np.rint((TABLE - points[:, 1]) * scale)
    return np.clip(np.stack([row, column], axis=1), 0, FRAME_SIZE - 1).astype(int)


def _background() -> np.ndarray:
    frame = np.full((FRAME_SIZE, FRAME_SIZE, 3), (28, 38, 52), dtype=np.uint8)
    rows, columns = np.mgrid[0:FRAME_SIZE, 0:FRAME_SIZE]
    x = columns / (FRAME_SIZE - 1) * 2 * TABLE - TABLE
    y = TABLE - rows / (FRAME_SIZE - 1) * 2 * TABLE
    on_ring = np.abs(np.hypot(x, y) - RING_RADIUS) < 0.025
    dashes = (np.floor((np.arctan2(y, x) + np.pi) / (2 * np.pi) * 24) % 2) == 0  # 12 dashes round the ring
    frame[on_ring & dashes] = (200, 200, 120)
    return frame


BACKGROUND = _background()


def draw_frame(positions: np.ndarray) -> np.ndarray:
    """(FRAME_SIZE, FRAME_SIZE, 3) uint8: the ring, the last TRAIL positions fading, the puck at the last one.

    Args:
        positions: (K, 2) the puck's positions so far, oldest first (K >= 1).
    """
    frame = BACKGROUND.copy()
    trail = _pixels(positions[-TRAIL:])
    for age, (row, column) in enumerate(trail[::-1][1:], start=1):  # newest first, fading with age
        shade = int(230 * (1 - age / (TRAIL + 1)))
        frame[max(row - 1, 0) : row + 2, max(column - 1, 0) : column + 2] = (shade // 3, shade // 2 + 40, shade)
    row, column = trail[-1]
    rows, columns = np.ogrid[0:FRAME_SIZE, 0:FRAME_SIZE]
    frame[(rows - row) ** 2 + (columns - column) ** 2 <= 16] = (240, 110, 60)
    return frame


class Orbit(gym.Env):
    """The puck on its table (see the module docstring).

    Observation: (x, y, vx * 10, vy * 10), float32. Action: a push in [-1, 1]^2. An episode is 200 steps,
    truncated; it starts with the puck at rest, anywhere on the table.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, render_mode: str | None = None) -> None:
        self.observation_space = spaces.Box(-1.5, 1.5, shape=(4,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.render_mode = render_mode
        self.position = np.zeros(2)
        self.velocity = np.zeros(2)
        self.steps = 0
        self.history: list[np.ndarray] = []

    def _obs(self) -> np.ndarray:
        return np.concatenate([self.position, self.velocity * VELOCITY_SCALE]).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.position = self.np_random.uniform(-TABLE + 0.1, TABLE - 0.1, size=2)
        self.velocity = np.zeros(2)
        self.steps = 0
        self.history = [self.position.copy()]
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        push = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        self.velocity = FRICTION * self.velocity + PUSH * push
        self.position = self.position + self.velocity
        for axis in range(2):  # the table's rim stops the puck
            if abs(self.position[axis]) > TABLE:
                self.position[axis] = np.sign(self.position[axis]) * TABLE
                self.velocity[axis] = 0.0
        self.steps += 1
        self.history.append(self.position.copy())
        score = hidden_score(self.position, self.velocity)
        return self._obs(), score, False, self.steps >= EPISODE_STEPS, {}

    def render(self) -> np.ndarray:
        return draw_frame(np.asarray(self.history))

    def draw_observations(self, obs: np.ndarray) -> np.ndarray:
        """(L, H, W, 3) uint8 frames of a segment from its (L, 4) observations: the worker's clips for raters."""
        positions = np.asarray(obs, dtype=np.float64)[:, :2]
        return np.stack([draw_frame(positions[: t + 1]) for t in range(len(positions))])

"""Synthetic teachers: programs that answer "which segment is better?" from the true reward.

All answer through one interface, the one the human path shares: a list of pairs in, a choice per pair out
("left", "right", "equal" or "skip"). The simulated family follows B-Pref (Lee et al. 2021): a Boltzmann-
rational teacher with rationality β, myopia γ, skip and equal thresholds, and a chance of mistakes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from worker.types import Choice, Segment

TEACHER_NAMES = ("perfect", "stochastic", "myopic", "skip", "equal", "mistake", "random")


class Teacher(Protocol):
    """Anything that answers pairs of segments: a simulated teacher here, a person through the server."""

    def answer(self, pairs: Sequence[tuple[Segment, Segment]]) -> list[Choice]: ...

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to answer as this teacher would have (random state, thresholds)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class TeacherParams:
    """B-Pref's teacher parameters; the defaults make the perfect teacher."""

    beta: float = float("inf")
    """Rationality: P[left] = softmax(β · returns); ∞ answers the higher return deterministically."""
    gamma: float = 1.0
    """Myopia: step t of H counts with weight γ^(H−1−t), so early steps matter less."""
    eps_mistake: float = 0.0
    """Chance of flipping a left/right answer."""
    eps_skip: float = 0.0
    """Skip when both returns are below eps_skip × the typical segment return."""
    eps_equal: float = 0.0
    """Answer "equal" when the returns differ by less than eps_equal × the typical segment return."""


# B-Pref's named teachers, each one departure from the perfect one.
PRESETS: dict[str, TeacherParams] = {
    "perfect": TeacherParams(),
    "stochastic": TeacherParams(beta=1.0),
    "myopic": TeacherParams(gamma=0.9),
    "skip": TeacherParams(eps_skip=0.1),
    "equal": TeacherParams(eps_equal=0.1),
    "mistake": TeacherParams(eps_mistake=0.1),
}


class SimulatedTeacher:
    """A B-Pref simulated teacher answering from the segments' true rewards.

    The skip and equal thresholds scale with the typical segment return: the mean true return of the segments
    in the first batch it answers, unless given. They are set once, from ε times that return (B-Pref's code
    multiplies by ε a second time after its first update, squaring ε; we don't).
    """

    def __init__(self, params: TeacherParams, rng: np.random.Generator, typical_return: float | None = None):
        if params.beta <= 0:
            raise ValueError(f"teacher beta must be > 0 (inf for a deterministic teacher), got {params.beta}")
        if not 0.0 < params.gamma <= 1.0:
            raise ValueError(f"teacher gamma must be in (0, 1], got {params.gamma}")
        for name in ("eps_mistake", "eps_skip", "eps_equal"):
            if getattr(params, name) < 0:
                raise ValueError(f"teacher {name} must be >= 0, got {getattr(params, name)}")
        self.params = params
        self.rng = rng
        self.typical_return = typical_return

    def answer(self, pairs: Sequence[tuple[Segment, Segment]]) -> list[Choice]:
        if not pairs:
            return []
        rewards_left = np.stack([left.true_rewards for left, _ in pairs]).astype(np.float64)
        rewards_right = np.stack([right.true_rewards for _, right in pairs]).astype(np.float64)
        sum_left, sum_right = rewards_left.sum(1), rewards_right.sum(1)
        if self.typical_return is None:
            self.typical_return = float(np.concatenate([sum_left, sum_right]).mean())
        p = self.params

        skip = np.maximum(sum_left, sum_right) < p.eps_skip * self.typical_return if p.eps_skip > 0 else None
        equal = np.abs(sum_left - sum_right) < p.eps_equal * abs(self.typical_return) if p.eps_equal > 0 else None

        horizon = rewards_left.shape[1]
        weights = p.gamma ** np.arange(horizon - 1, -1, -1)
        seen_left, seen_right = rewards_left @ weights, rewards_right @ weights
        if np.isinf(p.beta):
            prefers_left = seen_left > seen_right
            tie = seen_left == seen_right
        else:
            # Boltzmann choice, as a logistic of the scaled difference (stable for any magnitude).
            p_left = 1.0 / (1.0 + np.exp(np.clip(-p.beta * (seen_left - seen_right), -500, 500)))
            prefers_left = self.rng.random(len(pairs)) < p_left
            tie = np.zeros(len(pairs), dtype=bool)
        if p.eps_mistake > 0:
            prefers_left ^= self.rng.random(len(pairs)) < p.eps_mistake

        choices: list[Choice] = []
        for i in range(len(pairs)):
            if skip is not None and skip[i]:
                choices.append("skip")
            elif (equal is not None and equal[i]) or tie[i]:
                choices.append("equal")
            else:
                choices.append("left" if prefers_left[i] else "right")
        return choices

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "typical_return": self.typical_return}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.typical_return = state["typical_return"]


class RandomTeacher:
    """Answers left or right by a fair coin: the no-signal control for benchmarks."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def answer(self, pairs: Sequence[tuple[Segment, Segment]]) -> list[Choice]:
        return ["left" if flip else "right" for flip in self.rng.random(len(pairs)) < 0.5]

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


def make_teacher(
    name: str,
    rng: np.random.Generator,
    overrides: dict[str, float] | None = None,
    typical_return: float | None = None,
) -> Teacher:
    """The named teacher with any parameter overrides (keys of TeacherParams, e.g. {"beta": 2.0})."""
    if name == "random":
        return RandomTeacher(rng)
    if name not in PRESETS:
        raise ValueError(f"unknown teacher '{name}' (choose from {', '.join(TEACHER_NAMES)})")
    params = PRESETS[name]
    if overrides:
        params = TeacherParams(**{**params.__dict__, **overrides})
    return SimulatedTeacher(params, rng, typical_return)

"""Choosing which pairs of segments to ask a teacher about."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from worker.types import Segment

QUERY_METHODS = ("uniform", "disagreement")


class PreferencePredictor(Protocol):
    def preference_probabilities(self, left: Sequence[Segment], right: Sequence[Segment]) -> np.ndarray:
        """(M, P) each ensemble member's P[left ≻ right]."""
        ...


def random_pairs(num_segments: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """(count, 2) index pairs of distinct segments, drawn uniformly (pairs may repeat across calls)."""
    if num_segments < 2:
        return np.zeros((0, 2), dtype=np.int64)
    first = rng.integers(0, num_segments, size=count)
    # Shift the second index by 1..n-1 so it never equals the first.
    second = (first + rng.integers(1, num_segments, size=count)) % num_segments
    return np.stack([first, second], axis=1)


def select_pairs(
    segments: Sequence[Segment],
    count: int,
    method: str,
    rng: np.random.Generator,
    model: PreferencePredictor | None = None,
    pool_factor: int = 10,
) -> np.ndarray:
    """(count, 2) indices into `segments` of the pairs to ask about.

    `uniform` draws pairs at random. `disagreement` draws pool_factor × count candidate pairs and keeps those
    whose predicted preference varies most across the ensemble members (Christiano et al. 2017, §2.2.4).
    """
    if method not in QUERY_METHODS:
        raise ValueError(f"unknown query method '{method}' (choose from {', '.join(QUERY_METHODS)})")
    if method == "uniform" or model is None:
        return random_pairs(len(segments), count, rng)
    candidates = random_pairs(len(segments), count * pool_factor, rng)
    if len(candidates) == 0:
        return candidates
    probs = model.preference_probabilities(
        [segments[i] for i in candidates[:, 0]], [segments[j] for j in candidates[:, 1]]
    )
    disagreement = probs.std(axis=0)
    return candidates[np.argsort(-disagreement, kind="stable")[:count]]

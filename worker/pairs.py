"""Choosing which pairs of segments to ask a teacher about.

Most pairs of a task's segments often tie: in CartPole every live step is worth +1, so two segments that both
stay alive always get "equal"; in a sparse-goal task every segment that misses the goal scores the same. The
information sits in rare events — an episode that ends — and a label spent on a certain tie teaches almost
nothing. So besides the paper's ensemble disagreement, selection looks at what the learner can see without a
label: where each segment's episode ended (if it did), and how far apart the two segments are in observation
space. And it learns from the answers so far: once pairs whose segments end at the same step (or both never
end) have nearly always been answered "equal", it stops asking such pairs, and asks fewer than the schedule
wanted — deferring the rest — while the pool holds nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, get_args

import numpy as np

from worker.types import LabeledPair, Segment

QueryMethod = Literal["informative", "disagreement", "uniform"]
QUERY_METHODS: tuple[QueryMethod, ...] = get_args(QueryMethod)

# Answers about same-end pairs needed before their tie rate is trusted, and the rate that makes them "certain".
TIE_EVIDENCE_PAIRS = 10
CERTAIN_TIE_RATE = 0.9


class PreferencePredictor(Protocol):
    def preference_probabilities(self, left: Sequence[Segment], right: Sequence[Segment]) -> np.ndarray:
        """(M, P) each ensemble member's P[left ≻ right]."""
        ...


def live_steps(segment: Segment) -> int:
    """Steps before the segment's episode ended (its length when it did not end)."""
    return int(len(segment) - segment.ended.sum())


@dataclass(frozen=True)
class TieRecord:
    """How the teacher answered pairs whose two segments end at the same step (or both never end)."""

    same_end_pairs: int = 0
    """Such pairs answered left, right or equal."""
    same_end_ties: int = 0
    """Of those, the ones answered "equal"."""

    @property
    def same_end_is_certain_tie(self) -> bool:
        """Enough evidence that such pairs are (nearly) always answered "equal"."""
        return (
            self.same_end_pairs >= TIE_EVIDENCE_PAIRS
            and self.same_end_ties >= CERTAIN_TIE_RATE * self.same_end_pairs
        )


def tie_record(labeled: Sequence[LabeledPair]) -> TieRecord:
    """The tie record of the labels so far (skips say nothing about ties and are left out)."""
    same_end = [p for p in labeled if p.choice != "skip" and live_steps(p.left) == live_steps(p.right)]
    return TieRecord(len(same_end), sum(p.choice == "equal" for p in same_end))


# Standard errors of a fair coin by which the answers about ending must lean before the reward is anchored on it.
ENDING_EVIDENCE_SE = 3.0


def labels_rank_by_ending(labeled: Sequence[LabeledPair]) -> bool:
    """Whether the answers lean to one side of ending beyond chance, which justifies anchoring on the ended state.

    Of the strict (left/right) answers about pairs whose episodes end at different steps, the share preferring
    the longer-lived segment must differ from a coin's 0.5 by `ENDING_EVIDENCE_SE` standard errors, either way
    (in a goal task the teacher prefers the segment that ends first). Judged on the labels themselves, the
    verdict only grows firmer as answers come in, unlike a held-out accuracy that moves with every refit.
    """
    differ = [p for p in labeled if p.choice in ("left", "right") and live_steps(p.left) != live_steps(p.right)]
    if not differ:
        return False
    longer_chosen = sum((p.choice == "left") == (live_steps(p.left) > live_steps(p.right)) for p in differ)
    lean = abs(longer_chosen / len(differ) - 0.5)
    return lean > ENDING_EVIDENCE_SE * math.sqrt(0.25 / len(differ))


def random_pairs(num_segments: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """(count, 2) index pairs of distinct segments, drawn uniformly (pairs may repeat across calls)."""
    if num_segments < 2:
        return np.zeros((0, 2), dtype=np.int64)
    first = rng.integers(0, num_segments, size=count)
    # Shift the second index by 1..n-1 so it never equals the first.
    second = (first + rng.integers(1, num_segments, size=count)) % num_segments
    return np.stack([first, second], axis=1)


def candidate_pairs(num_segments: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """(≤ count, 2) distinct unordered pairs in random order: all of them when there are fewer than `count`."""
    total = num_segments * (num_segments - 1) // 2
    if total <= count:
        first, second = np.triu_indices(num_segments, k=1)
        pairs = np.stack([first, second], axis=1)
        return pairs[rng.permutation(len(pairs))]
    pairs = np.sort(random_pairs(num_segments, count, rng), axis=1)
    _unique, first_seen = np.unique(pairs, axis=0, return_index=True)
    return pairs[np.sort(first_seen)]


def _rank_score(values: np.ndarray) -> np.ndarray:
    """Values mapped to [0, 1] by rank (ties share their mean rank); all-equal values score 0."""
    if len(values) < 2 or np.all(values == values[0]):
        return np.zeros(len(values))
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    _unique, inverse = np.unique(values, return_inverse=True)
    mean_rank = np.bincount(inverse, weights=ranks) / np.bincount(inverse)
    return mean_rank[inverse] / (len(values) - 1)


def observation_distance(segments: Sequence[Segment], pairs: np.ndarray) -> np.ndarray:
    """(P,) mean distance between the two segments' live observations, step by step, in pool-standardized
    units; a step where one segment has ended compares its absorbing (zero) observation."""
    obs = np.stack([s.obs for s in segments]).astype(np.float64)  # (S, L, D)
    live = ~np.stack([s.ended for s in segments])
    scale = obs[live].std(0) + 1e-8 if live.any() else np.ones(obs.shape[-1])
    standardized = np.where(live[..., None], obs / scale, 0.0)
    return np.linalg.norm(standardized[pairs[:, 0]] - standardized[pairs[:, 1]], axis=-1).mean(-1)


def select_pairs(
    segments: Sequence[Segment],
    count: int,
    method: str,
    rng: np.random.Generator,
    model: PreferencePredictor | None = None,
    ties: TieRecord | None = None,
    pool_factor: int = 10,
) -> np.ndarray:
    """(≤ count, 2) indices into `segments` of the pairs to ask about.

    `uniform` draws pairs at random. `disagreement` draws pool_factor × count candidates and keeps those whose
    predicted preference varies most across the ensemble members (Christiano et al. 2017, §2.2.4).
    `informative` (the default) scores each candidate by three visible differences, each ranked to [0, 1] and
    summed: the ensemble's disagreement (once a model is trained), whether the two segments' episodes end at
    different steps, and their distance in observation space.

    With `ties` showing that same-end pairs are certain ties, `disagreement` and `informative` drop such
    candidates and may return fewer than `count` pairs (none when the pool holds only such pairs): the caller
    asks again later, when the pool has changed.
    """
    if method not in QUERY_METHODS:
        raise ValueError(f"unknown query method '{method}' (choose from {', '.join(QUERY_METHODS)})")
    if method == "uniform" or (method == "disagreement" and model is None and ties is None):
        return random_pairs(len(segments), count, rng)
    candidates = candidate_pairs(len(segments), count * pool_factor, rng)
    if len(candidates) == 0:
        return candidates
    live = np.array([live_steps(s) for s in segments])
    ends_differ = live[candidates[:, 0]] != live[candidates[:, 1]]
    if ties is not None and ties.same_end_is_certain_tie:
        candidates, ends_differ = candidates[ends_differ], ends_differ[ends_differ]
        if len(candidates) == 0:
            return candidates
    disagreement = np.zeros(len(candidates))
    if model is not None:
        probs = model.preference_probabilities(
            [segments[i] for i in candidates[:, 0]], [segments[j] for j in candidates[:, 1]]
        )
        disagreement = probs.std(axis=0)
    if method == "disagreement":
        score = disagreement
    else:
        distance = observation_distance(segments, candidates)
        score = _rank_score(disagreement) + _rank_score(ends_differ.astype(float)) + _rank_score(distance)
    return candidates[np.argsort(-score, kind="stable")[:count]]

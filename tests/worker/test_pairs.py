import numpy as np
import pytest

from worker.pairs import random_pairs, select_pairs
from worker.types import Segment


def seg(value: float) -> Segment:
    obs = np.full((2, 1), value, np.float32)
    return Segment(obs, np.zeros(2, np.int64), np.zeros(2, np.float32), np.zeros(2, bool))


class ContestedEnsemble:
    """Members agree on every pair except those involving segment 3."""

    def preference_probabilities(self, left, right):
        contested = np.array([3.0 in (a.obs[0, 0], b.obs[0, 0]) for a, b in zip(left, right, strict=True)])
        return np.stack([np.where(contested, 0.9, 0.6), np.where(contested, 0.1, 0.6)])


def test_random_pairs_never_pair_a_segment_with_itself(rng):
    pairs = random_pairs(5, 1000, rng)
    assert pairs.shape == (1000, 2) and np.all(pairs[:, 0] != pairs[:, 1])
    assert set(pairs.ravel()) == set(range(5))


def test_disagreement_picks_the_contested_pairs(rng):
    segments = [seg(float(v)) for v in range(6)]
    chosen = select_pairs(segments, 3, "disagreement", rng, ContestedEnsemble(), pool_factor=10)
    assert all(3 in pair for pair in chosen.tolist())


def test_uniform_ignores_the_model(rng):
    segments = [seg(float(v)) for v in range(6)]
    chosen = select_pairs(segments, 200, "uniform", rng, ContestedEnsemble())
    assert not all(3 in pair for pair in chosen.tolist())


def test_unknown_query_method_is_refused(rng):
    with pytest.raises(ValueError, match="unknown query method 'best'"):
        select_pairs([seg(0), seg(1)], 1, "best", rng)

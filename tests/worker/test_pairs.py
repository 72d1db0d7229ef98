import numpy as np
import pytest

from worker.pairs import (
    TIE_EVIDENCE_PAIRS,
    TieRecord,
    _rank_score,
    candidate_pairs,
    labels_rank_by_ending,
    live_steps,
    observation_distance,
    random_pairs,
    select_pairs,
    tie_record,
)
from worker.types import LabeledPair, Segment

LENGTH = 4


def seg(value: float, live: int = LENGTH) -> Segment:
    """A segment whose observation is `value` on each of its `live` steps, then ended."""
    ended = np.arange(LENGTH) >= live
    obs = np.where(ended[:, None], 0.0, value).astype(np.float32)
    return Segment(obs, np.zeros(LENGTH, np.int64), (~ended).astype(np.float32), ended)


CERTAIN_TIES = TieRecord(same_end_pairs=TIE_EVIDENCE_PAIRS, same_end_ties=TIE_EVIDENCE_PAIRS)


class ContestedEnsemble:
    """Members agree on every pair except those involving segment 3."""

    def preference_probabilities(self, left, right):
        contested = np.array([3.0 in (a.obs[0, 0], b.obs[0, 0]) for a, b in zip(left, right, strict=True)])
        return np.stack([np.where(contested, 0.9, 0.6), np.where(contested, 0.1, 0.6)])


def test_random_pairs_never_pair_a_segment_with_itself(rng):
    pairs = random_pairs(5, 1000, rng)
    assert pairs.shape == (1000, 2) and np.all(pairs[:, 0] != pairs[:, 1])
    assert set(pairs.ravel()) == set(range(5))


def test_candidate_pairs_are_distinct_and_all_of_them_in_a_small_pool(rng):
    pairs = candidate_pairs(4, 100, rng)
    assert sorted(map(tuple, pairs.tolist())) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    many = candidate_pairs(50, 200, rng)
    assert len({tuple(p) for p in many.tolist()}) == len(many) and np.all(many[:, 0] < many[:, 1])


def test_disagreement_picks_the_contested_pairs(rng):
    segments = [seg(float(v)) for v in range(6)]
    chosen = select_pairs(segments, 3, "disagreement", rng, ContestedEnsemble(), pool_factor=10)
    assert all(3 in pair for pair in chosen.tolist())


def test_informative_weighs_disagreement_too(rng):
    segments = [seg(float(v)) for v in range(6)]
    chosen = select_pairs(segments, 2, "informative", rng, ContestedEnsemble())
    assert all(3 in pair for pair in chosen.tolist())


def test_uniform_ignores_the_model(rng):
    segments = [seg(float(v)) for v in range(6)]
    chosen = select_pairs(segments, 200, "uniform", rng, ContestedEnsemble())
    assert not all(3 in pair for pair in chosen.tolist())


def test_unknown_query_method_is_refused(rng):
    with pytest.raises(ValueError, match="unknown query method 'best'"):
        select_pairs([seg(0), seg(1)], 1, "best", rng)


def test_live_steps_counts_the_steps_before_the_end():
    assert live_steps(seg(1.0)) == LENGTH and live_steps(seg(1.0, live=1)) == 1


def test_tie_record_counts_same_end_pairs_and_their_ties():
    labeled = [
        LabeledPair(seg(0), seg(1), "equal", 0),  # both alive: same end
        LabeledPair(seg(0), seg(2), "left", 1),  # both alive: same end, not a tie
        LabeledPair(seg(0, live=2), seg(1, live=2), "equal", 2),  # same end step
        LabeledPair(seg(0), seg(1, live=2), "left", 3),  # ends differ: not counted
        LabeledPair(seg(0), seg(1), "skip", 4),  # says nothing about ties
    ]
    assert tie_record(labeled) == TieRecord(same_end_pairs=3, same_end_ties=2)


def test_tie_rate_becomes_certain_only_with_enough_evidence():
    assert not TieRecord(TIE_EVIDENCE_PAIRS - 1, TIE_EVIDENCE_PAIRS - 1).same_end_is_certain_tie
    assert TieRecord(20, 18).same_end_is_certain_tie
    assert not TieRecord(20, 17).same_end_is_certain_tie


def test_rank_score_known_values():
    np.testing.assert_allclose(_rank_score(np.array([3.0, 1.0, 2.0])), [1.0, 0.0, 0.5])
    np.testing.assert_allclose(_rank_score(np.array([0.0, 1.0, 1.0, 0.0, 0.0])), [0.25, 0.875, 0.875, 0.25, 0.25])
    np.testing.assert_allclose(_rank_score(np.array([2.0, 2.0])), [0.0, 0.0])


def test_observation_distance_known_values():
    # Distances are in units of the std of all live observations in the pool (0, 1 and 3, four steps each).
    segments = [seg(0.0), seg(1.0), seg(3.0)]
    std = np.std([0.0] * 4 + [1.0] * 4 + [3.0] * 4)
    distances = observation_distance(segments, np.array([[0, 1], [0, 2], [1, 2]]))
    np.testing.assert_allclose(distances, np.array([1.0, 3.0, 2.0]) / std, rtol=1e-6)


@pytest.mark.parametrize("method", ["informative", "disagreement"])
def test_a_pool_with_one_informative_segment_asks_about_it(rng, method):
    # Five identical segments that never end and one that ends after a step: with same-end pairs known to
    # tie, only the five pairs with segment 5 can teach anything, and they are all that is asked.
    segments = [seg(1.0) for _ in range(5)] + [seg(1.0, live=1)]
    chosen = select_pairs(segments, 10, method, rng, ties=CERTAIN_TIES)
    assert sorted(map(tuple, chosen.tolist())) == [(0, 5), (1, 5), (2, 5), (3, 5), (4, 5)]


def test_informative_asks_the_one_differing_pair_first_without_tie_evidence(rng):
    segments = [seg(1.0) for _ in range(5)] + [seg(1.0, live=1)]
    for _ in range(20):
        (pair,) = select_pairs(segments, 1, "informative", rng).tolist()
        assert 5 in pair


def test_an_all_tie_pool_defers(rng):
    segments = [seg(float(v)) for v in range(6)]
    assert len(select_pairs(segments, 5, "informative", rng, ContestedEnsemble(), ties=CERTAIN_TIES)) == 0
    # Without the evidence it asks as many as wanted.
    assert len(select_pairs(segments, 5, "informative", rng, ContestedEnsemble(), ties=TieRecord(5, 5))) == 5


def ending_answers(longer_chosen: int, shorter_chosen: int, equal: int = 0) -> list[LabeledPair]:
    """Answers about pairs whose left segment lives 4 steps and right one 1 step."""
    choices = ["left"] * longer_chosen + ["right"] * shorter_chosen + ["equal"] * equal
    return [LabeledPair(seg(1.0, live=4), seg(2.0, live=1), c, i) for i, c in enumerate(choices)]


def test_ending_matters_only_when_answers_lean_three_standard_errors_from_a_coin():
    # 3 standard errors of a coin over n answers: 0.5 ± 1.5 / sqrt(n).
    assert not labels_rank_by_ending([])
    assert not labels_rank_by_ending(ending_answers(9, 1))  # 0.90 < 0.5 + 0.47 at n = 10
    assert labels_rank_by_ending(ending_answers(10, 0))
    assert labels_rank_by_ending(ending_answers(18, 2))  # 0.90 > 0.84: a teacher mistaken 1 time in 10
    assert not labels_rank_by_ending(ending_answers(12, 8))  # a coin could do that
    assert labels_rank_by_ending(ending_answers(2, 18))  # ending first is what the teacher wants
    assert not labels_rank_by_ending(ending_answers(9, 0, equal=100))  # 9 of 9 is just short; equal says nothing


def test_pairs_ending_at_the_same_step_say_nothing_about_ending():
    same_end = [LabeledPair(seg(1.0, live=2), seg(2.0, live=2), "left", i) for i in range(30)]
    assert not labels_rank_by_ending(same_end)

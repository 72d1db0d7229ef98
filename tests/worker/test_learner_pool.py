"""The learner's query pool: rare segments outlive their chunk, and certain ties are deferred, not asked."""

from collections import deque

from tiny_learners import alive_segment, tiny_learner

from worker.types import LabeledPair


def test_segments_that_reach_an_end_stay_queryable_after_their_chunk_leaves_the_pool():
    learner = tiny_learner()
    first_chunk = None
    while first_chunk is None or len(learner.pool) < 2 or learner.pool[0] is first_chunk:
        learner._add_to_pool(learner.ppo.collect())
        if learner.pool and first_chunk is None:
            first_chunk = learner.pool[0]
    ended = [s for s in first_chunk if s.ended.any()]
    assert ended, "a random CartPole policy fails within a few dozen steps"
    assert all(any(s is kept for kept in learner.rare) for s in ended)
    assert not any(s is kept for s in first_chunk if not s.ended.any() for kept in learner.rare)
    assert all(any(s is c for c in learner.candidates) for s in ended)


def test_a_pool_of_certain_ties_defers_the_batch():
    learner = tiny_learner()
    learner.pool = deque([[alive_segment(v) for v in range(6)]], maxlen=2)
    learner.labeled = [LabeledPair(alive_segment(0), alive_segment(1), "equal", key) for key in range(10)]
    assert len(learner.choose_pairs(5)) == 0
    learner.labeled = learner.labeled[:3]  # too little evidence that such pairs tie: ask
    assert len(learner.choose_pairs(5)) == 5

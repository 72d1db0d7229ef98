import numpy as np

from worker.exploration import LOG_OFFSET, StateEntropyBonus, knn_distances


def test_knn_distances_known_values():
    points = np.array([[0.0], [1.0], [3.0], [10.0]])
    np.testing.assert_allclose(knn_distances(points, points, k=1, exclude_self=True), [1.0, 1.0, 2.0, 7.0])
    np.testing.assert_allclose(knn_distances(points, points, k=2, exclude_self=True), [3.0, 2.0, 3.0, 9.0])
    np.testing.assert_allclose(knn_distances(np.array([[2.0]]), points, k=1, exclude_self=False), [1.0])


def test_knn_distances_in_chunks_match_one_block(rng):
    states = rng.normal(size=(3000, 3))
    queries = states[:2500]
    expected = np.sqrt(np.sort(((queries[:, None] - states[None]) ** 2).sum(-1), axis=1)[:, 5])
    # float32 distances: agree to about 1e-6 of a unit-scale distance
    np.testing.assert_allclose(knn_distances(queries, states, k=5, exclude_self=True), expected, rtol=1e-4)


def test_bonus_known_answer_on_a_tiny_rollout():
    # Six visits to the same state and one far away: with k = 5 each repeated state has five neighbours at
    # distance 0 (bonus log 1 = 0); the far one's five nearest are all 10 away, in units of the buffer's std.
    obs = np.array([0.0] * 6 + [10.0]).reshape(7, 1, 1)
    valid = np.ones((7, 1), dtype=bool)
    bonus = StateEntropyBonus(obs_dim=1, k=5)
    out = bonus.rewards(obs, valid)
    raw = np.array([0.0] * 6 + [np.log(LOG_OFFSET + 10.0 / obs.std())])
    expected = (raw - raw.mean()) / np.sqrt(raw.var() + 1e-8)
    np.testing.assert_allclose(out[:, 0], expected, rtol=1e-3)  # the running statistics' tiny prior
    assert out[6, 0] > 0 and np.all(out[:6, 0] < 0)


def test_bonus_skips_no_op_steps_and_keeps_a_bounded_buffer(rng):
    bonus = StateEntropyBonus(obs_dim=2, buffer_size=50)
    valid = np.ones((20, 4), dtype=bool)
    valid[3, 1] = False
    for _ in range(3):
        out = bonus.rewards(rng.normal(size=(20, 4, 2)), valid)
    assert out[3, 1] == 0 and out.dtype == np.float32
    assert bonus.buffer.shape == (50, 2)


def test_bonus_state_round_trip(rng):
    bonus = StateEntropyBonus(obs_dim=2)
    bonus.rewards(rng.normal(size=(10, 2, 2)), np.ones((10, 2), dtype=bool))
    copy = StateEntropyBonus(obs_dim=2)
    copy.load_state_dict(bonus.state_dict())
    batch = rng.normal(size=(5, 2, 2))
    valid = np.ones((5, 2), dtype=bool)
    np.testing.assert_array_equal(copy.rewards(batch, valid), bonus.rewards(batch, valid))

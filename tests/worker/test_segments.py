import numpy as np

from worker.segments import cut_segments, segment_windows


def column(values, dtype=bool):
    return np.asarray(values, dtype=dtype).reshape(-1, 1)


def test_windows_inside_an_episode_have_full_length():
    never = column([0] * 6)
    windows = segment_windows(never, never, column([1] * 6), length=3)
    assert windows == [(0, 0, 3), (0, 1, 3), (0, 2, 3), (0, 3, 3)]


def test_windows_reaching_a_termination_are_kept_with_their_live_steps():
    terminated = column([0, 0, 0, 1, 0, 0])
    valid = column([1, 1, 1, 1, 0, 1])  # step 4 is the autoreset no-op
    windows = segment_windows(terminated, column([0] * 6), valid, length=3)
    # Steps 0-2 and 1-3 (full), then windows starting at 2 and 3 that run past the end.
    assert windows == [(0, 0, 3), (0, 1, 3), (0, 2, 2), (0, 3, 1)]


def test_no_window_crosses_a_truncation_or_the_rollout_end():
    truncated = column([0, 1, 0, 0, 0])
    windows = segment_windows(column([0] * 5), truncated, column([1] * 5), length=3)
    assert windows == [(0, 2, 3)]


def test_segment_past_the_end_continues_in_the_absorbing_state(rng):
    steps = 5
    obs = np.arange(steps * 2, dtype=np.float32).reshape(steps, 1, 2) + 1
    actions = np.ones((steps, 1), np.int64)
    rewards = np.ones((steps, 1), np.float32)
    terminated = column([0, 0, 1, 0, 0])
    valid = column([1, 1, 1, 0, 1])
    segments = cut_segments(obs, actions, rewards, terminated, column([0] * 5), valid, 4, 10, rng)
    ends = [s for s in segments if s.ended.any()]
    assert len(segments) == 3 and len(ends) == 3
    shortest = min(segments, key=lambda s: (~s.ended).sum())
    assert list(shortest.ended) == [False, True, True, True]
    assert shortest.true_return == 1.0
    assert np.all(shortest.obs[1:] == 0) and np.all(shortest.actions[1:] == 0)
    np.testing.assert_array_equal(shortest.obs[0], obs[2, 0])

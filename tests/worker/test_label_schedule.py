"""The label schedule (`worker.loop.labels_due`) against values computed by hand."""

from __future__ import annotations

import math

from worker.config import RunConfig
from worker.loop import labels_due

# 100 labels, a quarter at once, the rest by 0.75 * 80_000 = 60_000 env steps.
CONFIG = RunConfig(labels=100, initial_label_fraction=0.25, label_schedule_end=0.75, timesteps=80_000)


def test_the_initial_share_comes_at_once_and_the_whole_budget_by_the_schedule_end():
    assert labels_due(CONFIG, 0) == 25
    assert labels_due(CONFIG, 59_999) < 100
    assert labels_due(CONFIG, 60_000) == 100
    assert labels_due(CONFIG, 80_000) == 100
    assert labels_due(CONFIG, 1_000_000) == 100


def test_in_between_it_follows_x_times_1_plus_c_over_1_plus_c_x_with_c_3():
    # 30_000 steps: x = 0.5, share = 0.5 * 4 / (1 + 1.5) = 0.8; 25 + floor(75 * 0.8) = 85.
    assert labels_due(CONFIG, 30_000) == 85
    # 15_000 steps: x = 0.25, share = 1 / 1.75 = 0.5714...; 25 + floor(42.857...) = 67.
    assert labels_due(CONFIG, 15_000) == 67
    assert 25 + math.floor(75 * 0.25 * 4 / 1.75) == 67


def test_the_schedule_never_goes_down():
    due = [labels_due(CONFIG, t) for t in range(0, 80_001, 500)]
    assert all(a <= b for a, b in zip(due, due[1:], strict=False))
    assert due[0] == 25 and due[-1] == 100


def test_a_schedule_that_ends_with_the_run_asks_its_last_labels_once_the_last_rollout_is_in():
    # The learner asks after collecting a rollout, so the last batch is about the final policy's behaviour.
    until_the_end = RunConfig(labels=100, label_schedule_end=1.0, timesteps=80_000)
    assert labels_due(until_the_end, 79_999) < 100
    assert labels_due(until_the_end, 80_000) == 100

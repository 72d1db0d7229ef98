import math

import torch

from worker.reward_model import preference_log_probs, preference_loss, preference_probability


def test_probability_of_sums_one_and_zero_is_the_notebooks_0_7311():
    p = preference_probability(torch.tensor(1.0), torch.tensor(0.0))
    assert abs(float(p) - 0.7311) < 1e-4


def test_noise_mixes_in_a_random_answer():
    p = preference_probability(torch.tensor(1.0), torch.tensor(0.0), noise=0.1)
    assert abs(float(p) - (0.9 * 0.7310586 + 0.05)) < 1e-6


def test_huge_sums_give_exact_certainty_not_nan():
    p = preference_probability(torch.tensor([1000.0, -1000.0]), torch.tensor([-1000.0, 1000.0]))
    assert torch.equal(p, torch.tensor([1.0, 0.0]))
    log_left, log_right = preference_log_probs(torch.tensor([1000.0]), torch.tensor([-1000.0]), noise=0.1)
    assert torch.isfinite(log_left).all() and torch.isfinite(log_right).all()
    loss = preference_loss(torch.tensor([1000.0]), torch.tensor([-1000.0]), torch.tensor([0.0]))
    assert torch.isfinite(loss) and float(loss) > 1000 - 1e-3


def test_loss_of_a_known_batch():
    sum_left = torch.tensor([1.0, 0.0, 2.0])
    sum_right = torch.tensor([0.0, 0.0, -1.0])
    targets = torch.tensor([1.0, 0.5, 0.0])
    # By hand: -log σ(1); -(0.5 log 0.5 + 0.5 log 0.5); -log(1 - σ(3)).
    expected = (-math.log(0.7310586) + math.log(2) - math.log(1 - 0.9525741)) / 3
    assert abs(float(preference_loss(sum_left, sum_right, targets)) - expected) < 1e-5
    assert abs(expected - 1.3517) < 1e-4


def test_equal_label_is_minimised_at_even_odds():
    sums = torch.linspace(-3, 3, 61)
    losses = [float(preference_loss(s.reshape(1), torch.zeros(1), torch.tensor([0.5]))) for s in sums]
    assert abs(float(sums[int(torch.tensor(losses).argmin())])) < 1e-6

import numpy as np
import pytest

from worker.teachers import SimulatedTeacher, TeacherParams, make_teacher
from worker.types import Segment


def seg(rewards) -> Segment:
    rewards = np.asarray(rewards, dtype=np.float32)
    n = len(rewards)
    return Segment(np.zeros((n, 2), np.float32), np.zeros(n, np.int64), rewards, np.zeros(n, bool))


def test_perfect_teacher_prefers_higher_return_and_calls_exact_ties_equal(rng):
    teacher = make_teacher("perfect", rng)
    pairs = [(seg([1, 1]), seg([1, 0])), (seg([0, 0]), seg([0, 1])), (seg([1, 0]), seg([0, 1]))]
    assert teacher.answer(pairs) == ["left", "right", "equal"]


def test_stochastic_teacher_follows_boltzmann_probabilities(rng):
    teacher = make_teacher("stochastic", rng, {"beta": 0.5})
    answers = teacher.answer([(seg([2.0]), seg([0.0]))] * 20_000)
    share_left = answers.count("left") / len(answers)
    expected = 1 / (1 + np.exp(-0.5 * 2.0))
    assert abs(share_left - expected) < 0.015


def test_mistake_teacher_flips_at_its_rate(rng):
    teacher = make_teacher("mistake", rng, {"eps_mistake": 0.2})
    answers = teacher.answer([(seg([1.0]), seg([0.0]))] * 20_000)
    assert abs(answers.count("right") / len(answers) - 0.2) < 0.015


def test_myopic_teacher_weights_late_steps_more(rng):
    # Left earns early, right earns late: equal sums, but γ^(H-1-t) favours the late reward.
    teacher = make_teacher("myopic", rng, {"gamma": 0.5})
    assert teacher.answer([(seg([1, 0, 0]), seg([0, 0, 1]))]) == ["right"]
    assert make_teacher("perfect", rng).answer([(seg([1, 0, 0]), seg([0, 0, 1]))]) == ["equal"]


def test_skip_threshold_scales_once_with_typical_return(rng):
    teacher = SimulatedTeacher(TeacherParams(eps_skip=0.5), rng, typical_return=10.0)
    pairs = [(seg([4.0]), seg([3.0])), (seg([6.0]), seg([1.0]))]
    assert teacher.answer(pairs) == ["skip", "left"]
    # Answering again must not rescale the threshold (B-Pref squares ε after its first update).
    assert teacher.answer(pairs) == ["skip", "left"]
    assert teacher.typical_return == 10.0


def test_typical_return_is_taken_from_the_first_batch(rng):
    teacher = make_teacher("equal", rng, {"eps_equal": 0.1})
    first = [(seg([10.0]), seg([30.0]))]  # typical return 20 → equal below a difference of 2
    assert teacher.answer(first) == ["right"]
    assert teacher.answer([(seg([100.0]), seg([101.5])), (seg([100.0]), seg([103.0]))]) == ["equal", "right"]


def test_random_teacher_is_a_fair_coin(rng):
    answers = make_teacher("random", rng).answer([(seg([5.0]), seg([0.0]))] * 10_000)
    assert abs(answers.count("left") / len(answers) - 0.5) < 0.02
    assert set(answers) == {"left", "right"}


def test_bad_teacher_settings_raise_value_error(rng):
    with pytest.raises(ValueError, match="unknown teacher 'oracle'"):
        make_teacher("oracle", rng)
    with pytest.raises(ValueError, match="gamma"):
        make_teacher("myopic", rng, {"gamma": 1.5})

import numpy as np
import torch

from worker.config import RewardModelConfig
from worker.reward_model import RewardEnsemble
from worker.segments import observation_changes
from worker.teachers import make_teacher
from worker.types import LabeledPair, Segment

LENGTH = 10


def random_segment(rng, ended_from: int | None = None) -> Segment:
    obs = rng.normal(size=(LENGTH, 3)).astype(np.float32)
    rewards = obs[:, 0].copy()  # the true reward is the first observation coordinate
    ended = np.zeros(LENGTH, bool)
    if ended_from is not None:
        ended[ended_from:] = True
        obs[ended] = 0
        rewards[ended] = 0
    return Segment(obs, np.zeros(LENGTH, np.int64), rewards, ended)


def labeled(segments, rng, teacher_name="perfect") -> list[LabeledPair]:
    answers = make_teacher(teacher_name, rng).answer(segments)
    return [LabeledPair(a, b, c, i) for i, ((a, b), c) in enumerate(zip(segments, answers, strict=True))]


def labeled_pairs(rng, count, teacher_name="perfect"):
    return labeled([(random_segment(rng), random_segment(rng)) for _ in range(count)], rng, teacher_name)


def make_model(seed=0, terminal_weight=1.0, **overrides) -> RewardEnsemble:
    config = RewardModelConfig(**overrides)
    return RewardEnsemble(3, 2, True, config, torch.device("cpu"), seed, terminal_weight=terminal_weight)


def test_ensemble_learns_a_known_reward_from_perfect_labels(rng):
    model = make_model()
    metrics = model.fit(labeled_pairs(rng, 150))
    assert metrics["reward/val_accuracy"] >= 0.85
    fresh = labeled_pairs(np.random.default_rng(7), 300)
    assert model.accuracy(fresh) >= 0.9
    segments = [random_segment(rng) for _ in range(200)]
    learned = model.segment_sums(segments).mean(0)
    true = np.array([s.true_return for s in segments])
    assert np.corrcoef(learned, true)[0, 1] > 0.9


def test_random_labels_teach_far_less_than_perfect_ones(rng):
    segments = [random_segment(rng) for _ in range(200)]
    spread = {}
    for teacher in ("random", "perfect"):
        model = make_model()
        model.fit(labeled_pairs(np.random.default_rng(3), 100, teacher_name=teacher))
        spread[teacher] = float(np.std(model.segment_sums(segments).mean(0)))
    # Coin-flip labels leave summed rewards within about a logit of each other; real labels spread them wide.
    assert spread["random"] < 1.0
    assert spread["perfect"] > 4 * spread["random"]


def test_members_differ_because_of_their_bootstrap_resamples(rng):
    model = make_model()
    model.fit(labeled_pairs(rng, 60))
    sums = model.segment_sums([random_segment(rng) for _ in range(20)])
    assert sums.shape == (3, 20)
    assert not np.allclose(sums[0], sums[1])


def test_ended_state_learns_a_low_reward_when_failing_loses(rng):
    # Positive-reward world where ending early forfeits reward: the absorbing state must come out worse.
    pairs = []
    for i in range(120):
        a, b = random_segment(rng, ended_from=int(rng.integers(2, LENGTH))), random_segment(rng)
        a = Segment(np.abs(a.obs), a.actions, np.where(a.ended, 0, 1).astype(np.float32), a.ended)
        b = Segment(np.abs(b.obs), b.actions, np.ones(LENGTH, np.float32), b.ended)
        pairs.append(LabeledPair(a, b, "right", i))
    model = make_model()
    model.fit(pairs)
    model.set_normalization([p.right for p in pairs] + [p.left for p in pairs], anchor_on_ended=True)
    live = model.rewards(np.abs(rng.normal(size=(20, 4, 3))).astype(np.float32), np.zeros((20, 4), np.int64))
    assert live.shape == (20, 4)
    assert (live > 0).mean() > 0.95  # measured against the ended state, staying alive pays


def test_skips_are_not_trained_on_and_equal_pulls_toward_even_odds(rng):
    model = make_model()
    a, b = random_segment(rng), random_segment(rng)
    assert model.fit([LabeledPair(a, b, "skip", 0)]) == {}
    model.fit([LabeledPair(a, b, "equal", i) for i in range(20)])
    p = model.preference_probabilities([a], [b]).mean()
    assert abs(p - 0.5) < 0.05


def test_state_dict_round_trip_gives_identical_rewards(rng):
    model = make_model()
    model.fit(labeled_pairs(rng, 40))
    model.set_normalization([random_segment(rng) for _ in range(10)], anchor_on_ended=False)
    copy = make_model(seed=5)
    copy.load_state_dict(model.state_dict())
    obs = rng.normal(size=(7, 2, 3)).astype(np.float32)
    actions = np.zeros((7, 2), np.int64)
    np.testing.assert_array_equal(model.rewards(obs, actions), copy.rewards(obs, actions))



def test_standardized_inputs_are_clipped_so_far_states_meet_no_extrapolation():
    model = make_model(input_clip=5.0)
    model.obs_mean = np.zeros(model.obs_dim, np.float32)
    model.obs_std = np.full(model.obs_dim, 0.1, np.float32)
    near_edge = np.full((1, model.obs_dim), 0.5, np.float32)  # 5 std out: the bound itself
    far_out = np.full((1, model.obs_dim), 2.4, np.float32)  # 24 std out
    no_action, alive = np.zeros(1), np.zeros(1, bool)
    features = model.features(far_out, no_action, alive)[0, : model.obs_dim]
    assert torch.all(features == 5.0)
    assert torch.equal(model.features(far_out, no_action, alive), model.features(near_edge, no_action, alive))


def test_each_fit_standardizes_by_all_labels_so_far_and_same_labels_give_the_same_model(rng):
    narrow = labeled_pairs(rng, 40)
    for pair in narrow:  # the first labels see a narrow range of states, like an untrained policy's
        pair.left.obs[:] *= 0.1
        pair.right.obs[:] *= 0.1
    wide = labeled_pairs(np.random.default_rng(5), 40)
    model = make_model()
    model.fit(narrow)
    assert np.all(model.obs_std < 0.2)
    model.fit(narrow + wide)
    # The states seen since are inside the statistics: about the mix of std 0.1 and std 1 data.
    assert np.all(model.obs_std > 0.6)
    probe = [random_segment(rng) for _ in range(10)]
    again = make_model()
    again.fit(narrow + wide)
    np.testing.assert_array_equal(model.segment_sums(probe), again.segment_sums(probe))


def test_a_model_that_does_not_beat_chance_on_held_out_labels_gives_zero_reward(rng):
    model = make_model()
    model.fit(labeled_pairs(rng, 60))
    segments = [random_segment(rng) for _ in range(10)]
    obs = np.stack([s.obs for s in segments], axis=1)  # (T, N, obs_dim)
    actions = np.zeros(obs.shape[:2], np.int64)
    model.set_normalization(segments, anchor_on_ended=False)
    assert np.abs(model.rewards(obs, actions)).max() > 0.1
    model.set_normalization(segments, anchor_on_ended=False, trusted=False)
    assert not model.rewards(obs, actions).any()
    # Trust needs held-out accuracy two standard errors above a coin: 0.5 + 2 * sqrt(0.25 / 20) = 0.724.
    model.validation_strict, model.validation_accuracy = 20, 0.70
    assert not model.beats_chance
    model.validation_accuracy = 0.75
    assert model.beats_chance
    model.validation_strict, model.validation_accuracy = 4, 0.5  # too few to judge
    assert model.beats_chance


def ending_segment(rng, landed: bool) -> Segment:
    """Live steps that say nothing of the outcome, then an ending worth ±5 that only the step the episode ended on
    shows (its first coordinate ±1), as a lander's approach speed tells a landing from a crash."""
    live = int(rng.integers(3, LENGTH - 1))
    obs = np.zeros((LENGTH, 3), np.float32)
    obs[:live] = rng.normal(size=(live, 3))
    obs[live - 1] = [1.0 if landed else -1.0, 0.0, 0.0] + rng.normal(scale=0.1, size=3)  # no two alike
    rewards = np.zeros(LENGTH, np.float32)
    rewards[live - 1] = 5.0 if landed else -5.0  # the event comes with the step that ended the episode
    return Segment(obs, np.zeros(LENGTH, np.int64), rewards, np.arange(LENGTH) >= live)


def test_terminal_reward_tells_a_landing_from_a_crash(rng):
    segments = [tuple(ending_segment(rng, bool(rng.integers(2))) for _side in range(2)) for _ in range(200)]
    labels = labeled(segments, rng)
    fresh_rng = np.random.default_rng(11)
    fresh = [(ending_segment(fresh_rng, True), ending_segment(fresh_rng, False)) for _ in range(100)]
    fresh_labeled = [LabeledPair(a, b, "left", i) for i, (a, b) in enumerate(fresh)]

    for weight in (1.0, LENGTH / 2):  # the ending counted once, and as many steps as the Learner counts it
        model = make_model(terminal_reward=True, terminal_weight=weight)
        model.fit(labels)
        assert model.accuracy(fresh_labeled) > 0.95
    # PPO gets the ending's reward on the step that ended the episode, and only there.
    model.set_normalization([s for pair in segments for s in pair], anchor_on_ended=True)
    obs = rng.normal(size=(2, 2, 3)).astype(np.float32)
    obs[0, 0], obs[0, 1] = [1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]  # the steps that landed and crashed
    terminated = np.array([[True, True], [False, False]])
    with_endings = model.rewards(obs, np.zeros((2, 2), np.int64), terminated)
    without = model.rewards(obs, np.zeros((2, 2), np.int64))
    landing_bonus, crash_bonus = with_endings[0] - without[0]
    assert landing_bonus > 1.0 > -1.0 > crash_bonus
    np.testing.assert_array_equal(with_endings[1], without[1])


def test_an_ending_unlike_every_labeled_one_is_not_charged_the_penalty_the_model_extrapolates(rng):
    # The labels have seen crashes only (last step (-1, 0, 0)), each worse than a segment that does not end.
    segments = [(ending_segment(rng, False), random_segment(rng)) for _ in range(150)]
    model = make_model(terminal_reward=True, terminal_weight=LENGTH / 2)
    model.fit(labeled(segments, rng))
    model.set_normalization([s for pair in segments for s in pair], anchor_on_ended=True)
    crash, unseen = [-1.0, 0.0, 0.0], [-6.0, 0.0, 0.0]  # 5 standard deviations from every labeled ending
    assert model.ending_familiarity(np.array([crash, unseen], np.float32)).tolist() == [1.0, 0.0]

    obs = np.array([[crash, unseen]], np.float32)
    actions = np.zeros((1, 2), np.int64)
    ending_bonus = model.rewards(obs, actions, np.ones((1, 2), bool)) - model.rewards(obs, actions)
    every = np.ones(2, bool)
    extrapolated = model.member_rewards(model.features(obs[0], actions[0], every, every)).mean(0).numpy()
    assert np.all(extrapolated - model.reward_offset < 0)  # the model charges the unseen ending like a crash...
    assert ending_bonus[0, 0] < -1.0
    assert ending_bonus[0, 1] == 0.0  # ...and PPO is not charged it

    # The familiar endings travel with the model's state.
    restored = make_model(terminal_reward=True, terminal_weight=LENGTH / 2)
    restored.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(restored.labeled_endings, model.labeled_endings)
    assert restored.ending_spacing == model.ending_spacing


def test_observation_changes_are_the_next_observation_minus_this_one_within_an_episode():
    obs = np.array([[0.0], [1.0], [3.0], [10.0], [11.0]], np.float32)
    continues = np.array([True, True, False, True, True])  # the episode ended on step 2
    changes = observation_changes(obs, continues)
    np.testing.assert_array_equal(changes[:, 0], [1.0, 2.0, 0.0, 1.0, 0.0])  # the last row's next is unknown


def touchdown_segment(touchdown: int | None) -> Segment:
    """A flag that turns on at `touchdown` and stays on; the true reward pays 1 on the step that turns it on, as a
    potential-based shaping pays for reaching a state (LunarLander's leg contact)."""
    flag = np.zeros((LENGTH, 1), np.float32)
    rewards = np.zeros(LENGTH, np.float32)
    if touchdown is not None:
        flag[touchdown:] = 1.0
        rewards[touchdown - 1] = 1.0  # the step whose next observation has the flag on
    return Segment(flag, np.zeros(LENGTH, np.int64), rewards, np.zeros(LENGTH, bool))


def test_with_changes_a_reward_for_reaching_a_state_is_paid_once_not_for_every_step_spent_there(rng):
    times = [None, 2, 4, 6, 8]
    pairs = [tuple(touchdown_segment(times[i]) for i in rng.choice(len(times), 2)) for _ in range(200)]
    sums = {}
    for use_changes in (False, True):
        model = RewardEnsemble(1, 2, True, RewardModelConfig(use_changes=use_changes), torch.device("cpu"), 0)
        model.fit(labeled(pairs, rng))
        sums[use_changes] = model.segment_sums([touchdown_segment(t) for t in (2, 8)]).mean(0)
    # Touching down early or late is worth the same 1; a reward of the state alone pays early touchdowns more.
    early_minus_late = {use_changes: float(s[0] - s[1]) for use_changes, s in sums.items()}
    assert abs(early_minus_late[True]) < 0.25 * early_minus_late[False]

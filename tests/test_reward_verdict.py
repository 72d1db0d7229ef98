"""bench/reward_verdict.py: the learned reward's verdict on two runs' policies, and the labels by how they end."""

import numpy as np
import pytest
from tiny_learners import tiny_learner

from bench.reward_verdict import Episode, agreement_by_kind, main, play, retrain, segment_ending, verdict
from worker.loop import save_checkpoint
from worker.types import LabeledPair, Segment


def segment(value: float, live: int, last_reward: float = 0.0, length: int = 4) -> Segment:
    """Observation `value` on each of `live` steps, then ended; the step that ended it earned `last_reward`."""
    ended = np.arange(length) >= live
    rewards = np.where(ended, 0.0, 1.0).astype(np.float32)
    if live < length:
        rewards[live - 1] = last_reward
    return Segment(np.full((length, 1), value, np.float32), np.zeros(length, np.int64), rewards, ended)


def test_segments_are_told_apart_by_the_sign_of_the_reward_that_ended_their_episode():
    assert segment_ending(segment(0.0, live=4)) == "never ended"
    assert segment_ending(segment(0.0, live=2, last_reward=100.0)) == "ended, last reward > 0"
    assert segment_ending(segment(0.0, live=2, last_reward=-100.0)) == "ended, last reward < 0"
    assert segment_ending(segment(0.0, live=3, last_reward=0.0)) == "ended, last reward 0"


class PrefersHigherObservations:
    def preference_probabilities(self, left, right):
        diff = np.array([a.obs[0, 0] - b.obs[0, 0] for a, b in zip(left, right, strict=True)])
        return np.stack([1 / (1 + np.exp(-diff))] * 2)


def test_agreement_is_counted_per_kind_of_pair():
    landing, crash, alive = (segment(v, live, r) for v, live, r in ((3.0, 2, 100.0), (1.0, 2, -100.0), (2.0, 4, 0.0)))
    labeled = [
        LabeledPair(landing, crash, "left", 0),  # the model agrees (3 > 1)
        LabeledPair(alive, landing, "right", 1),  # agrees (3 > 2)
        LabeledPair(alive, crash, "right", 2),  # disagrees (2 > 1)
        LabeledPair(alive, crash, "left", 3),  # agrees
        LabeledPair(alive, crash, "equal", 4),  # not a strict answer: left out
    ]
    assert agreement_by_kind(PrefersHigherObservations(), labeled) == {
        "ended, last reward < 0 vs ended, last reward > 0": (1, 1.0),
        "ended, last reward > 0 vs never ended": (1, 1.0),
        "ended, last reward < 0 vs never ended": (2, 0.5),
    }


def test_episodes_are_scored_by_both_rewards_and_discounted_with_the_given_gamma():
    learner = tiny_learner()

    def two_per_step(obs, actions, terminated, changes):
        return np.full(obs.shape[:2], 2.0, np.float32)

    episodes = play(learner.ppo, two_per_step, "CartPole-v1", episodes=3, gamma=0.9)
    for episode in episodes:
        assert episode.true_return == episode.length  # CartPole pays +1 per step, the last one included
        assert episode.learned_return == pytest.approx(2.0 * episode.length)
        assert episode.discounted_learned_return == pytest.approx(2.0 * (1 - 0.9**episode.length) / (1 - 0.9))
        assert episode.ending == ("ended, last reward > 0" if episode.length < 500 else "never ended")


def played(*true_and_learned: tuple[float, float]) -> list[Episode]:
    return [Episode(true, learned, learned, 10, "never ended") for true, learned in true_and_learned]


def test_the_verdict_names_the_policy_the_learned_reward_prefers_and_whether_the_true_reward_agrees():
    agree = {"preference": played((-100.0, 5.0)), "reference": played((200.0, 9.0), (100.0, 7.0))}
    assert verdict(agree, "learned_return") == "prefers the reference policy: as the true reward does"
    disagree = {"preference": played((-100.0, 12.0)), "reference": played((200.0, 9.0))}
    assert verdict(disagree, "learned_return") == (
        "prefers the preference policy: the true reward prefers the reference one"
    )
    tie = {"preference": played((-100.0, 0.0)), "reference": played((200.0, 0.0))}
    assert verdict(tie, "learned_return") == "cannot tell the two policies apart"


def test_the_script_prints_the_verdict_and_refuses_a_folder_without_a_run(tmp_path, capsys):
    for name in ("pref", "ref"):
        save_checkpoint(tmp_path / name / "checkpoint.pt", tiny_learner())
    assert main([str(tmp_path / "pref"), str(tmp_path / "ref"), "--episodes", "2"]) == 0
    out = capsys.readouterr().out
    # An untrained model is not trusted and gives zero reward: it cannot tell the policies apart, and says why.
    assert "the learned reward, summed, cannot tell the two policies apart" in out
    assert "not trusted" in out and "preference" in out and "reference" in out
    with pytest.raises(SystemExit) as refused:
        main([str(tmp_path / "pref"), str(tmp_path / "missing")])
    assert refused.value.code == 2
    assert "missing: no checkpoint.pt" in capsys.readouterr().err


def test_retraining_trains_a_fresh_policy_on_the_frozen_learned_reward_seen_with_each_steps_change():
    learner = tiny_learner()
    seen = []

    def pays_for_moving_right(obs, actions, terminated, changes):
        seen.append((obs.copy(), changes.copy()))
        return changes[..., 0]  # the cart's change of position

    learner.reward_model.rewards = pays_for_moving_right  # type: ignore[method-assign]
    ppo = retrain(learner, 256)
    assert ppo.timesteps == 256 and ppo is not learner.ppo
    assert len(seen) == 256 // 64  # one call per rollout of 4 envs x 16 steps
    obs, changes = seen[0]
    assert not changes[-1].any()  # the last step's next observation is not in the rollout
    inside = np.abs(changes[:-1]).sum(-1) > 0
    np.testing.assert_allclose(changes[:-1][inside], (obs[1:] - obs[:-1])[inside], rtol=1e-6)


def test_the_script_judges_a_retrained_policy_when_asked(tmp_path, capsys):
    for name in ("pref", "ref"):
        save_checkpoint(tmp_path / name / "checkpoint.pt", tiny_learner())
    assert main([str(tmp_path / "pref"), str(tmp_path / "ref"), "--episodes", "2", "--retrain", "128"]) == 0
    assert "\nretrained " in capsys.readouterr().out
    with pytest.raises(SystemExit) as refused:
        main([str(tmp_path / "pref"), str(tmp_path / "ref"), "--retrain", "-1"])
    assert refused.value.code == 2
    assert "--retrain must be 0 or more" in capsys.readouterr().err

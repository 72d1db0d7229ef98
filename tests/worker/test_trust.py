"""Trust in the learned reward: PPO learns only from a trusted model, and held-out accuracy must beat chance on two
refits in a row (one lucky refit of a coin's labels is not enough)."""

import torch
from tiny_learners import alive_segment, tiny_learner

from worker.loop import Learner
from worker.types import LabeledPair


def policy_weights(learner: Learner) -> list[torch.Tensor]:
    return [p.detach().clone() for p in learner.ppo.agent.actor.parameters()]


def test_ppo_does_not_learn_from_a_model_that_is_not_trusted() -> None:
    learner = tiny_learner()
    before = policy_weights(learner)
    for _ in range(3):
        learner.step(lambda candidates, pairs: [])  # asked, but no answer yet: no labels, no reward
    assert not learner.reward_model.trusted
    assert all(torch.equal(a, b) for a, b in zip(before, policy_weights(learner), strict=True))
    learner.reward_model.set_normalization(learner.candidates, anchor_on_ended=False, trusted=True)
    learner.step(lambda candidates, pairs: [])
    assert not all(torch.equal(a, b) for a, b in zip(before, policy_weights(learner), strict=True))


def test_an_untrusted_model_leaves_ppo_to_the_state_entropy_bonus_where_the_config_asks() -> None:
    learner = tiny_learner(explore_until_trusted=True, exploration_steps=0)
    before = policy_weights(learner)
    seen = []
    bonus = learner.exploration.rewards

    def recorded_bonus(obs, valid):
        seen.append(obs.shape)
        return bonus(obs, valid)

    learner.exploration.rewards = recorded_bonus  # type: ignore[method-assign]
    for _ in range(3):
        learner.step(lambda candidates, pairs: [])
    assert not learner.reward_model.trusted
    assert seen == [(16, 4, 4)] * 3  # every rollout's states got the bonus ...
    assert not all(torch.equal(a, b) for a, b in zip(before, policy_weights(learner), strict=True))  # ... and PPO moved
    learner.reward_model.set_normalization(learner.candidates, anchor_on_ended=False, trusted=True)
    learner.step(lambda candidates, pairs: [])
    assert len(seen) == 3  # a trusted model's reward replaces the bonus


def test_held_out_accuracy_must_beat_chance_on_two_refits_in_a_row() -> None:
    learner = tiny_learner()
    model = learner.reward_model
    learner.pool.append([alive_segment(v) for v in range(4)])
    # Same-end pairs only: the answers cannot lean on ending, so only the held-out accuracy can open the gate.
    labels = [LabeledPair(alive_segment(k), alive_segment(k + 1), "left", k) for k in range(40)]

    def refit_with_accuracy(accuracy: float) -> bool:
        def fit(pairs: list[LabeledPair]) -> dict[str, float]:
            model.validation_accuracy, model.validation_strict = accuracy, 40
            return {}

        model.fit = fit  # type: ignore[method-assign]  # the seam: what a fit reports, not the training itself
        learner.fit(labels)
        return model.trusted

    # 2 standard errors above a coin with 40 held-out labels: 0.5 + 2 * sqrt(0.25 / 40) = 0.658.
    assert refit_with_accuracy(0.9)  # the first refit: nothing before it said otherwise
    assert not refit_with_accuracy(0.6)
    assert not refit_with_accuracy(0.9)  # lucky once after a miss
    assert refit_with_accuracy(0.9)

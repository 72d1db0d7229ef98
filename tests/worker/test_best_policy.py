"""The run ends with the policy snapshot that scores best on the learned reward over whole episodes."""

import numpy as np
import tiny_learners
import torch

from worker.loop import Learner, ask_teacher
from worker.teachers import make_teacher


def tiny_learner(trusted: bool = True) -> Learner:
    """A learner whose reward model, stubbed where a test says, counts as trusted."""
    learner = tiny_learners.tiny_learner(eval_episodes=4)
    learner.reward_model.trusted = trusted
    return learner


def always(learner: Learner, action: int) -> dict:
    """A policy state whose deterministic action is `action` in every state."""
    last = [m for m in learner.ppo.agent.actor if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([5.0, 0.0] if action == 0 else [0.0, 5.0]))
    return learner.ppo.policy_state()


def pushes_right(obs: np.ndarray, actions: np.ndarray, terminated: np.ndarray, changes: np.ndarray) -> np.ndarray:
    """A learned reward that pays for pushing right: (1, B) steps -> (1, B)."""
    return (np.asarray(actions) == 1).astype(np.float32)


def acts(learner: Learner) -> int:
    return int(learner.ppo.act(np.zeros((1, 4), np.float32))[0])


def test_episode_returns_sum_the_given_reward_over_whole_episodes() -> None:
    learner = tiny_learner()
    learner.ppo.load_policy_state(always(learner, 1))
    lengths = learner.ppo.episode_returns(4, seed=3)  # the true reward: +1 a step until the pole falls
    assert np.all((lengths > 5) & (lengths < 30))  # pushing one way topples it within a few dozen steps
    assert np.array_equal(learner.ppo.episode_returns(4, seed=3, reward=pushes_right), lengths)
    learner.ppo.load_policy_state(always(learner, 0))
    assert np.all(learner.ppo.episode_returns(4, seed=3, reward=pushes_right) == 0)


def test_the_snapshot_with_the_best_learned_return_is_kept_and_ties_go_to_the_later_one() -> None:
    learner = tiny_learner()
    learner.reward_model.rewards = pushes_right  # type: ignore[method-assign]  # the seam: rewards(obs, actions)
    learner.snapshots = [(512, always(learner, 0)), (1024, always(learner, 1)), (1536, always(learner, 0))]
    learner.ppo.load_policy_state(always(learner, 0))
    learner.keep_best_policy()
    assert acts(learner) == 1 and learner.chosen_policy["timesteps"] == 1024
    returns = [c["learned_return"] for c in learner.chosen_policy["candidates"]]
    assert returns[0] == returns[2] == returns[3] == 0 < returns[1]

    learner.reward_model.rewards = lambda obs, actions, *_ending: np.zeros(np.shape(actions), np.float32)  # type: ignore[method-assign]
    learner.snapshots = [(512, always(learner, 1))]
    learner.ppo.load_policy_state(always(learner, 0))
    learner.keep_best_policy()
    assert acts(learner) == 0 and learner.chosen_policy["timesteps"] == learner.ppo.timesteps  # the last one


def test_an_untrusted_reward_model_or_no_snapshots_leave_the_last_policy() -> None:
    learner = tiny_learner()
    learner.reward_model.rewards = pushes_right  # type: ignore[method-assign]
    learner.ppo.load_policy_state(always(learner, 0))
    learner.keep_best_policy()  # no snapshots yet
    assert acts(learner) == 0 and learner.chosen_policy == {}
    learner.snapshots = [(512, always(learner, 1))]
    learner.ppo.load_policy_state(always(learner, 0))
    learner.reward_model.trusted = False
    learner.keep_best_policy()
    assert acts(learner) == 0 and learner.chosen_policy == {}


def test_snapshots_come_after_the_first_labels_evenly_spaced_and_survive_a_checkpoint() -> None:
    learner = tiny_learner(trusted=False)
    teacher = make_teacher("perfect", np.random.default_rng(1))
    first_labels_at = []

    def ask(candidates: list, pairs: np.ndarray) -> list:
        first_labels_at.append(learner.ppo.timesteps)
        return learner.labeled + ask_teacher(teacher, candidates, pairs, first_key=len(learner.labeled))

    while not learner.done:
        learner.step(ask)
    steps = [t for t, _ in learner.snapshots]
    spacing = learner.config.timesteps // learner.config.policy_snapshots
    assert len(steps) >= 4 and steps[0] >= first_labels_at[0]
    assert all(b - a >= spacing for a, b in zip(steps, steps[1:], strict=False))
    restored = tiny_learner()
    restored.load_state_dict(learner.state_dict())
    assert [t for t, _ in restored.snapshots] == steps and restored.next_snapshot == learner.next_snapshot

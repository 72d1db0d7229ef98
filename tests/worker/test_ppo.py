"""PPO: GAE and time-limit bootstrapping by hand, tiny hand-made envs, every supported env, checkpoints, learning."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from worker.config import PPOConfig
from worker.env_settings import ppo_settings_for
from worker.envs import describe_env, make_vec_env, validate_env_id
from worker.ppo import PPO, RunningMeanStd, compute_gae
from worker.ppo_baseline import train_true_reward

CPU = torch.device("cpu")
TINY = PPOConfig(num_envs=2, num_steps=16, update_epochs=2, num_minibatches=2, learning_rate=1e-3)


class Counter(gym.Env):
    """Observation = steps taken in the episode; reward 1 per step; terminates after `end_at` steps if set."""

    def __init__(self, end_at: int | None = None) -> None:
        self.observation_space = spaces.Box(0.0, 100.0, shape=(1,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self.end_at = end_at
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], dtype=np.float32), {}

    def step(self, action):
        self.t += 1
        terminated = self.end_at is not None and self.t >= self.end_at
        return np.array([float(self.t)], dtype=np.float32), 1.0, terminated, False, {}


# Both hit their end after 3 steps: one by the time limit (truncated), one by itself (terminated).
gym.register("TestCounterTruncated-v0", entry_point=lambda: Counter(end_at=None), max_episode_steps=3)
gym.register("TestCounterTerminated-v0", entry_point=lambda: Counter(end_at=3), max_episode_steps=100)


def one_env_config() -> PPOConfig:
    return PPOConfig(num_envs=1, num_steps=8, gamma=0.9, gae_lambda=0.8, update_epochs=1, num_minibatches=1)


# ----------------------------------------------------------------------------------------------------- GAE
def test_gae_matches_a_hand_computation_without_episode_ends():
    rewards = np.array([[1.0], [2.0], [3.0]], dtype=np.float32)
    values = np.array([[0.5], [1.0], [1.5]], dtype=np.float32)
    never = np.zeros((3, 1), dtype=bool)
    advantages, returns = compute_gae(
        rewards, values, np.array([2.0], dtype=np.float32), never, never, ~never, gamma=0.9, gae_lambda=0.8
    )
    # delta_2 = 3 + 0.9*2.0 - 1.5 = 3.3;   A_2 = 3.3
    # delta_1 = 2 + 0.9*1.5 - 1.0 = 2.35;  A_1 = 2.35 + 0.72*3.3 = 4.726
    # delta_0 = 1 + 0.9*1.0 - 0.5 = 1.4;   A_0 = 1.4 + 0.72*4.726 = 4.80272
    np.testing.assert_allclose(advantages[:, 0], [4.80272, 4.726, 3.3], rtol=1e-5)
    np.testing.assert_allclose(returns[:, 0], [5.30272, 5.726, 4.8], rtol=1e-5)


def test_gae_bootstraps_truncation_from_final_obs_value_and_termination_from_zero():
    # Env 0 is truncated and env 1 terminated after step 1; step 2 is the NEXT_STEP no-op whose observation is
    # the final one, with value 10. Values elsewhere are 1, rewards 1.
    gamma, lam = 0.9, 0.8
    rewards = np.ones((4, 2), dtype=np.float32)
    values = np.ones((4, 2), dtype=np.float32)
    values[2] = 10.0
    terminated = np.zeros((4, 2), dtype=bool)
    truncated = np.zeros((4, 2), dtype=bool)
    truncated[1, 0] = True
    terminated[1, 1] = True
    valid = np.ones((4, 2), dtype=bool)
    valid[2] = False
    advantages, _ = compute_gae(rewards, values, np.ones(2, np.float32), terminated, truncated, valid, gamma, lam)

    assert advantages[1, 0] == pytest.approx(1.0 + gamma * 10.0 - 1.0)  # r + gamma V(final obs) - V(s)
    assert advantages[1, 1] == pytest.approx(1.0 - 1.0)  # r + 0 - V(s)
    assert np.all(advantages[2] == 0.0)  # the no-op step carries nothing
    # Inside the episode the advantage flows back from step 1 to step 0; nothing flows across the boundary.
    delta0 = 1.0 + gamma * 1.0 - 1.0
    np.testing.assert_allclose(advantages[0], delta0 + gamma * lam * advantages[1], rtol=1e-6)


@pytest.mark.parametrize(
    ("env_id", "terminates"), [("TestCounterTruncated-v0", False), ("TestCounterTerminated-v0", True)]
)
def test_collect_bootstraps_a_time_limit_from_the_final_observation_but_not_a_termination(env_id, terminates):
    ppo = PPO(env_id, one_env_config(), total_timesteps=1000, seed=0, device=CPU)
    rollout = ppo.collect()

    # Episodes of 3 steps, each followed by the autoreset no-op step that shows the final observation.
    np.testing.assert_array_equal(rollout.obs[:, 0, 0], [0, 1, 2, 3, 0, 1, 2, 3])
    np.testing.assert_array_equal(rollout.valid[:, 0], [1, 1, 1, 0, 1, 1, 1, 0])
    ended = np.array([0, 0, 1, 0, 0, 0, 1, 0], dtype=bool)
    never = np.zeros(8, dtype=bool)
    np.testing.assert_array_equal(rollout.terminated[:, 0], ended if terminates else never)
    np.testing.assert_array_equal(rollout.truncated[:, 0], never if terminates else ended)
    assert rollout.episode_returns == [3.0, 3.0]

    with torch.no_grad():
        v = ppo.agent.get_value(torch.tensor([[2.0], [3.0]])).numpy()
    advantages, _ = ppo.advantages(rollout)
    expected = 1.0 - v[0] if terminates else 1.0 + 0.9 * v[1] - v[0]
    assert advantages[2, 0] == pytest.approx(expected, abs=1e-5)
    assert advantages[3, 0] == 0.0


# ----------------------------------------------------------------------------------------------------- envs
def test_unknown_env_id_is_rejected_with_its_name():
    with pytest.raises(ValueError, match="unknown env id 'NoSuchEnv-v0'"):
        validate_env_id("NoSuchEnv-v0")
    with pytest.raises(ValueError, match="unknown env id"):
        PPO("NoSuchEnv-v0", TINY, 100, 0, CPU)


def test_cartpole_uses_the_native_vector_env_and_pendulum_the_sync_one():
    cartpole = make_vec_env("CartPole-v1", 4, seed=0)
    pendulum = make_vec_env("Pendulum-v1", 4, seed=0)
    assert type(cartpole).__name__ == "CartPoleVectorEnv"
    assert isinstance(pendulum, gym.vector.SyncVectorEnv)
    cartpole.close()
    pendulum.close()


@pytest.mark.parametrize(
    ("env_id", "obs_dim", "action_shape", "action_dtype"),
    [
        ("CartPole-v1", 4, (), np.int64),
        ("Acrobot-v1", 6, (), np.int64),
        ("Pendulum-v1", 3, (1,), np.float32),
        ("MountainCarContinuous-v0", 2, (1,), np.float32),
    ],
)
def test_collect_update_and_evaluate_run_on_each_supported_env(env_id, obs_dim, action_shape, action_dtype, rng):
    config = ppo_settings_for(env_id)
    small = replace(config, num_envs=2, num_steps=16, update_epochs=2, num_minibatches=2)
    ppo = PPO(env_id, small, total_timesteps=64, seed=0, device=CPU)
    rollout = ppo.collect()

    assert rollout.obs.shape == (16, 2, obs_dim) and rollout.obs.dtype == np.float32
    assert rollout.actions.shape == (16, 2, *action_shape) and rollout.actions.dtype == action_dtype
    for name in ("true_rewards", "terminated", "truncated", "valid"):
        assert getattr(rollout, name).shape == (16, 2)
    assert ppo.timesteps == 32
    spaces_ = describe_env(env_id)
    if not spaces_.discrete:  # actions sent to the env lie within its bounds
        assert np.all(rollout.actions >= spaces_.action_low) and np.all(rollout.actions <= spaces_.action_high)

    metrics = ppo.update(rollout, rewards=rng.normal(size=(16, 2)).astype(np.float32))
    for key in ("ppo/approx_kl", "ppo/clipfrac", "ppo/value_loss", "ppo/entropy", "ppo/lr", "ppo/policy_loss"):
        assert np.isfinite(metrics[key]), key

    mean, std = ppo.evaluate(episodes=2, seed=3)
    assert np.isfinite(mean) and np.isfinite(std)
    assert ppo.timesteps == 32  # evaluation steps are not counted
    ppo.close()


def test_update_learns_from_the_given_rewards_not_the_true_ones():
    a = PPO("CartPole-v1", TINY, 1000, seed=0, device=CPU)
    b = PPO("CartPole-v1", TINY, 1000, seed=0, device=CPU)
    rollout_a, rollout_b = a.collect(), b.collect()
    np.testing.assert_array_equal(rollout_a.actions, rollout_b.actions)
    a.update(rollout_a)
    b.update(rollout_b, rewards=-rollout_b.true_rewards)
    assert not torch.equal(a.agent.critic[0].weight, b.agent.critic[0].weight)
    with pytest.raises(ValueError, match=r"shape \(16, 2\)"):
        a.update(a.collect(), rewards=np.zeros((16, 3), dtype=np.float32))


def test_learning_rate_anneals_linearly_to_zero_over_total_timesteps():
    ppo = PPO("CartPole-v1", TINY, total_timesteps=64, seed=0, device=CPU)
    lrs = [ppo.update(ppo.collect())["ppo/lr"] for _ in range(2)]
    assert lrs == pytest.approx([1e-3, 0.5e-3])


# ----------------------------------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_state_dict_round_trip_gives_identical_actions(env_id, tmp_path, rng):
    config = replace(TINY, norm_obs=True)
    trained = PPO(env_id, config, 1000, seed=0, device=CPU)
    trained.update(trained.collect())
    path = tmp_path / "ppo.pt"
    torch.save(trained.state_dict(), path)

    restored = PPO(env_id, config, 1000, seed=99, device=CPU)
    restored.load_state_dict(torch.load(path, weights_only=True))

    obs = rng.normal(size=(32, restored.obs_dim)).astype(np.float32)
    np.testing.assert_array_equal(trained.act(obs, deterministic=True), restored.act(obs, deterministic=True))
    # The random state travels too: the next sampled actions agree.
    np.testing.assert_array_equal(trained.act(obs, deterministic=False), restored.act(obs, deterministic=False))
    assert restored.timesteps == trained.timesteps
    np.testing.assert_array_equal(restored.obs_rms.mean, trained.obs_rms.mean)
    # and a fresh learner with another seed acts differently, so the comparison above can fail
    other = PPO(env_id, config, 1000, seed=99, device=CPU)
    assert not np.array_equal(other.act(obs, deterministic=False), trained.act(obs, deterministic=False))


# ----------------------------------------------------------------------------------------------------- learning
@pytest.mark.slow
def test_ppo_on_the_true_cartpole_reward_reaches_195():
    result = train_true_reward("CartPole-v1", total_timesteps=30_000, seed=0, device=CPU, eval_every=4096)
    best = max(e.mean_return for e in result.evals)
    result.ppo.close()
    assert best >= 195, [e.mean_return for e in result.evals]


# ----------------------------------------------------------------------------------------------------- normalizer
def test_running_mean_std_matches_numpy_on_the_concatenated_batches(rng):
    batches = [rng.normal(loc=3.0, scale=2.0, size=(n, 3)) for n in (1, 7, 50, 200)]
    rms = RunningMeanStd((3,), epsilon=1e-12)
    for batch in batches:
        rms.update(batch)
    everything = np.concatenate(batches)
    np.testing.assert_allclose(rms.mean, everything.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(rms.var, everything.var(axis=0), rtol=1e-9)
    assert rms.count == pytest.approx(len(everything))


def test_running_mean_std_state_dict_round_trips(rng, tmp_path):
    rms = RunningMeanStd((2,))
    rms.update(rng.normal(size=(10, 2)))
    torch.save(rms.state_dict(), tmp_path / "rms.pt")
    restored = RunningMeanStd((2,))
    restored.load_state_dict(torch.load(tmp_path / "rms.pt", weights_only=True))
    np.testing.assert_array_equal(restored.mean, rms.mean)
    np.testing.assert_array_equal(restored.var, rms.var)
    assert restored.count == rms.count
    x = rng.normal(size=(4, 2))
    np.testing.assert_array_equal(restored.normalize(x, 10.0), rms.normalize(x, 10.0))

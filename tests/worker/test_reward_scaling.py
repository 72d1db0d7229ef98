"""PPO's reward scaling (`PPOConfig.norm_reward`) and its state, on a rollout with a known answer."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from worker.config import PPOConfig
from worker.ppo import PPO

CPU = torch.device("cpu")
TINY = PPOConfig(num_envs=2, num_steps=16, update_epochs=1, num_minibatches=2, norm_reward=True, gamma=0.5)


def test_rewards_are_divided_by_the_std_of_the_discounted_return_which_restarts_at_episode_ends():
    ppo = PPO("Pendulum-v1", TINY, 1000, seed=0, device=CPU)  # 200-step episodes: none ends in 16 steps
    rollout = ppo.collect()
    rollout.terminated[7, 0] = True  # pretend sub-env 0's episode ended at step 7
    rewards = np.full((16, 2), 2.0, dtype=np.float32)
    scaled = ppo.scale_rewards(rollout, rewards)

    returns = []  # by hand: G_t = r_t + gamma * G_(t-1), back to 0 after an episode's last step
    for env in range(2):
        g = 0.0
        for t in range(16):
            g = 2.0 + 0.5 * g
            returns.append(g)
            if rollout.terminated[t, env]:
                g = 0.0
    std = np.std(returns)
    np.testing.assert_allclose(scaled, rewards / std, rtol=1e-3)
    assert ppo._discounted_return[1] == returns[-1] and ppo._discounted_return[0] == returns[15]
    ppo.close()


def test_scaled_rewards_are_clipped_zero_on_no_op_steps_and_the_statistics_survive_a_state_dict():
    ppo = PPO("Pendulum-v1", replace(TINY, reward_clip=1.5), 1000, seed=0, device=CPU)
    rollout = ppo.collect()
    rollout.valid[3, 1] = False
    rewards = np.zeros((16, 2), dtype=np.float32)
    rewards[5, 0] = 1e6
    scaled = ppo.scale_rewards(rollout, rewards)
    assert scaled[5, 0] == 1.5 and scaled[3, 1] == 0.0

    other = PPO("Pendulum-v1", TINY, 1000, seed=1, device=CPU)
    other.load_state_dict(ppo.state_dict())
    assert other.return_rms.var == ppo.return_rms.var
    np.testing.assert_array_equal(other._discounted_return, ppo._discounted_return)
    ppo.close()
    other.close()


def test_update_with_norm_reward_runs_on_true_and_learned_rewards():
    ppo = PPO("Pendulum-v1", TINY, 1000, seed=0, device=CPU)
    for rewards in (None, np.ones((16, 2), dtype=np.float32)):
        metrics = ppo.update(ppo.collect(), rewards)
        assert np.isfinite(metrics["ppo/value_loss"])
    assert ppo.return_rms.count > 32
    ppo.close()

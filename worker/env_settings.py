"""Per-env training defaults as data: PPO hyperparameters, run length and segment length, each with its reason.

`RunConfig.resolved()` takes from here what a run config leaves open. An env without an entry gets
`default_settings(env_id)`: general settings derived from its spaces and episode length.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from worker.config import PPOConfig, RewardModelConfig
from worker.envs import registered_id


@dataclass(frozen=True)
class EnvSettings:
    """The defaults for one env."""

    ppo: PPOConfig
    """PPO hyperparameters, tuned on the env's true reward (only what differs from `PPOConfig()` is spelled out)."""
    timesteps: int
    """Env steps per run when the run config gives none: enough for PPO on the learned reward to settle."""
    segment_length: int
    """Steps per segment when the run config gives none: long enough to contain a failure or a swing-up."""
    why: str
    """Where these values come from and why they differ from `default_settings`."""
    exploration_steps: int = 0
    """Env steps of state-entropy pre-training before the first query (worker/exploration.py)."""
    explore_until_trusted: bool = False
    """`RunConfig.explore_until_trusted` for a run config that leaves it open."""
    reward_model: RewardModelConfig | None = None
    """The reward model for a run config that keeps the default one; None: `RewardModelConfig()`."""
    label_schedule_end: float | None = None
    """`RunConfig.label_schedule_end` for a run config that keeps the default; None: that default."""


ENV_SETTINGS: dict[str, EnvSettings] = {
    "CartPole-v1": EnvSettings(
        ppo=PPOConfig(
            num_envs=16,
            num_steps=32,
            update_epochs=10,
            num_minibatches=2,
            learning_rate=1e-3,
            anneal_clip=True,
            ent_coef=0.01,
        ),
        timesteps=80_000,
        segment_length=50,
        why=(
            "rl-zoo3's settings (learning rate and clip range annealed from 1e-3 and 0.2, 256-sample minibatches) "
            "with twice the envs, half the epochs, gamma 0.99 / lambda 0.95 and a small entropy bonus: half the "
            "gradient steps per env step, and fewer late collapses of the deterministic policy."
        ),
    ),
    "Acrobot-v1": EnvSettings(
        ppo=PPOConfig(num_envs=16, num_steps=64, gae_lambda=0.94, learning_rate=1e-3),
        timesteps=150_000,
        segment_length=50,
        why=(
            "rl-zoo3's settings (16 envs, gamma 0.99, lambda 0.94, 4 epochs, no entropy bonus) with 64-step "
            "rollouts and a 1e-3 learning rate, and without its observation normalization: that made Acrobot "
            "(and CartPole) worse here, as the first statistics come from the narrow start-state distribution "
            "and the inputs shift a lot as the policy improves."
        ),
    ),
    "Pendulum-v1": EnvSettings(
        ppo=PPOConfig(
            num_steps=1024, gamma=0.9, update_epochs=10, num_minibatches=8, learning_rate=1e-3, max_grad_norm=2.0
        ),
        timesteps=80_000,
        segment_length=50,
        why=(
            "rl-zoo3's settings (without gSDE) with 512-sample minibatches and a looser gradient clip, for 1/8 of "
            "its gradient steps. 80k steps: at 60k, PPO on the true reward was still improving on seed 5 (-228). "
            "rl-zoo3's 1e-3 learning rate, not twice it: at 2e-3 (tuned on the true reward) seed 9's policy fell "
            "from -259 to -474 on a learned reward that tracked the true one (correlation 0.994); at 1e-3 every "
            "seed 0-9 ends at -137 to -177."
        ),
    ),
    "rlhf/SparseGoal-v0": EnvSettings(
        ppo=PPOConfig(num_envs=8, num_steps=64, learning_rate=1e-3, ent_coef=0.01),
        timesteps=60_000,
        segment_length=25,
        exploration_steps=8_192,
        why=(
            "Our sparse-goal test task (worker/goal_env.py): short rollouts and a 1e-3 learning rate because the "
            "task is small, an entropy bonus so the policy keeps walking both ways until the goal pays, 25-step "
            "segments (a quarter of an episode, more than the 15 steps the goal needs), and state-entropy "
            "exploration first because a random policy's segments nearly all tie."
        ),
    ),
}


# ---- MuJoCo locomotion (gymnasium[mujoco], the `mujoco` extra) ----------------------------------------------
# PPO: rl-zoo3's hyperparams/ppo.yml for the v3 envs, the settings behind its benchmark.md table (PPO, 1M steps:
# HalfCheetah 5819, Hopper 2410, Walker2d 3479, Swimmer 282, Ant 1327), which bench/mujoco.py measures against.
# What every entry shares, and why:
#   - one env, 512-step rollouts (2048 for the untuned Swimmer and Ant): rl-zoo3's; one long-running sub-env
#     sees whole 1000-step episodes, and the policy is updated every half episode.
#   - observation and reward normalization (rl-zoo3's `normalize: true`): MuJoCo observations mix joint angles
#     (about ±1) with velocities (±10 and more), and the true reward's scale differs 10-fold between envs; the
#     learned reward is scaled by the same running return std, so true and learned reward reach PPO alike.
#   - a constant learning rate (rl-zoo3 gives plain numbers, not `lin_` schedules), the small rates it tuned.
#   - vf_coef twice rl-zoo3's: SB3's value loss is the plain squared error, ours has CleanRL's factor 1/2.
#   - ortho_init=False, ReLU, 256x256 networks and log std -2 where rl-zoo3's policy_kwargs say so.
# Reward model: the paper's 1.5 s segments (dt = frame_skip x timestep differs per env, so the step count does),
# actions as input (every locomotion reward has a control cost -0.1|a|^2 or similar that observations do not
# show), and labels asked until 90% of the run instead of 75%: the states a faster gait reaches keep changing
# until late in training, and the model has to keep up with them.
_MUJOCO_REWARD_MODEL = RewardModelConfig(use_actions=True)
_MUJOCO_TIMESTEPS = 1_000_000


def _mujoco_ppo(vf_coef: float = 0.5, **tuned: Any) -> PPOConfig:
    """An rl-zoo3 entry (`vf_coef` as rl-zoo3 gives it) with what every MuJoCo entry shares, as listed above."""
    return PPOConfig(num_envs=1, anneal_lr=False, norm_obs=True, norm_reward=True, vf_coef=2 * vf_coef, **tuned)


def _mujoco(ppo: PPOConfig, segment_length: int, why: str) -> EnvSettings:
    return EnvSettings(
        ppo=ppo,
        timesteps=_MUJOCO_TIMESTEPS,
        segment_length=segment_length,
        why=why,
        reward_model=_MUJOCO_REWARD_MODEL,
        label_schedule_end=0.9,
    )


ENV_SETTINGS.update(
    {
        "HalfCheetah-v5": _mujoco(
            _mujoco_ppo(
                num_steps=512,
                num_minibatches=8,
                update_epochs=20,
                gamma=0.98,
                gae_lambda=0.92,
                learning_rate=2.0633e-5,
                clip_coef=0.1,
                ent_coef=4.01762e-4,
                vf_coef=0.58096,
                max_grad_norm=0.8,
                hidden_size=256,
                activation="relu",
                init_log_std=-2.0,
                ortho_init=False,
            ),
            segment_length=30,  # dt 0.05 s
            why=(
                "rl-zoo3's tuned HalfCheetah-v3 settings: 64-sample minibatches, 20 epochs, clip 0.1 and a 2e-5 "
                "learning rate make many small steps; gamma 0.98 and lambda 0.92 because the reward (forward "
                "speed) is immediate; 256x256 ReLU networks starting from a narrow policy (log std -2), since a "
                "wide one makes the cheetah flip onto its back, a local optimum PPO rarely leaves."
            ),
        ),
        "Hopper-v5": _mujoco(
            _mujoco_ppo(
                num_steps=512,
                num_minibatches=16,
                update_epochs=5,
                gamma=0.999,
                gae_lambda=0.99,
                learning_rate=9.80828e-5,
                clip_coef=0.2,
                ent_coef=2.29519e-3,
                vf_coef=0.835671,
                max_grad_norm=0.7,
                hidden_size=256,
                activation="relu",
                init_log_std=-2.0,
                ortho_init=False,
            ),
            segment_length=188,  # dt 0.008 s
            why=(
                "rl-zoo3's tuned Hopper-v3 settings: gamma 0.999 and lambda 0.99 because falling ends the episode "
                "and costs all the healthy reward still to come, so the far future matters; 32-sample minibatches, "
                "5 epochs, a 1e-4 learning rate, 256x256 ReLU networks and a narrow initial policy."
            ),
        ),
        "Walker2d-v5": _mujoco(
            _mujoco_ppo(
                num_steps=512,
                num_minibatches=16,
                update_epochs=20,
                gamma=0.99,
                gae_lambda=0.95,
                learning_rate=5.05041e-5,
                clip_coef=0.1,
                ent_coef=5.85045e-4,
                vf_coef=0.871923,
                max_grad_norm=1.0,
            ),
            segment_length=188,  # dt 0.008 s
            why=(
                "rl-zoo3's tuned Walker2d-v3 settings: 32-sample minibatches, 20 epochs, clip 0.1 and a 5e-5 "
                "learning rate; its default 64x64 tanh networks with orthogonal init (no policy_kwargs there)."
            ),
        ),
        "Swimmer-v5": _mujoco(
            _mujoco_ppo(
                num_steps=2048,
                num_minibatches=32,
                update_epochs=10,
                gamma=0.9999,
                learning_rate=3e-4,
            ),
            segment_length=38,  # dt 0.04 s
            why=(
                "rl-zoo3's Swimmer-v3 entry: SB3's PPO defaults (2048-step rollouts, 64-sample minibatches, 10 "
                "epochs, 3e-4) with normalization and gamma 0.9999: the swimmer's speed builds up over hundreds of "
                "steps, and a shorter horizon settles for wiggling in place."
            ),
        ),
        "Ant-v5": _mujoco(
            _mujoco_ppo(
                num_steps=2048,
                num_minibatches=32,
                update_epochs=10,
                learning_rate=3e-4,
            ),
            segment_length=30,  # dt 0.05 s
            why=(
                "rl-zoo3's Ant-v3 entry: SB3's PPO defaults with observation and reward normalization (its tuned "
                "Ant settings are for 10M steps). Ant-v5 observes contact forces as well (105 numbers)."
            ),
        ),
        "Reacher-v5": _mujoco(
            _mujoco_ppo(
                num_steps=512,
                num_minibatches=16,
                update_epochs=5,
                gamma=0.9,
                gae_lambda=1.0,
                learning_rate=1.04019e-4,
                clip_coef=0.3,
                vf_coef=0.950368,
                max_grad_norm=0.9,
            ),
            segment_length=25,  # dt 0.02 s; episodes are 50 steps, and a segment never crosses the time limit
            why=(
                "rl-zoo3's tuned Reacher-v2 settings (gamma 0.9: the reward is the distance to the target now); "
                "segments of 0.5 s rather than 1.5 s, as an episode lasts only 1 s."
            ),
        ),
    }
)


# ---- an env without an entry -------------------------------------------------------------------------------
EPISODES_PER_RUN = 1000
"""Env steps per run without tuned settings: this many episodes of the registered time limit (rl-zoo3 trains
LunarLander 1M steps; at 400 episodes, true-reward PPO on these defaults reached its return on 1 seed of 3,
at 1000 on all 3)..."""
MIN_TIMESTEPS = 200_000
"""...and at least this many: the learned reward needs about that long to settle on short-episode tasks."""
EPISODE_STEPS_CAP = 10_000
"""A random episode of an env registered without a time limit is cut here (and this taken as its length)."""
WIDE_OBSERVATION = 10.0
"""An observation coordinate whose bounds are further apart than this (or unbounded) calls for normalization."""


def needs_obs_normalization(space: spaces.Space) -> bool:
    """Whether a Box observation space has a coordinate unbounded or wider than `WIDE_OBSERVATION`, or whose
    bounds differ in width more than 10-fold between coordinates (MountainCar: position 1.8, velocity 0.14)."""
    if not isinstance(space, spaces.Box):
        return False
    widths = (space.high - space.low).astype(np.float64)
    if not np.all(np.isfinite(widths)) or widths.max() > WIDE_OBSERVATION:
        return True
    return bool(widths.max() > 10 * max(widths.min(), 1e-12))


def random_episode_length(env: gym.Env, episodes: int = 3, seed: int = 0) -> int:
    """The longest of a few random episodes, for an env without a registered time limit (a user's class that
    truncates its own episodes); at most `EPISODE_STEPS_CAP`."""
    env.action_space.seed(seed)
    longest = 0
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        steps, done = 0, False
        while not done and steps < EPISODE_STEPS_CAP:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            steps, done = steps + 1, terminated or truncated
        longest = max(longest, steps)
    return longest


@functools.cache
def default_settings(env_id: str) -> EnvSettings:
    """General settings for an env nobody tuned, in the spirit of rl-zoo3's untuned entries (`normalize: true`,
    SB3's PPO defaults, 8-16 envs): derived from its spaces and its episode length (the registered time limit,
    else measured by `random_episode_length`).

    Raises:
        ValueError: when `env_id` names no env (see `worker.envs.registered_id`).
    """
    env = gym.make(registered_id(env_id), disable_env_checker=True)
    try:
        observations, actions = env.observation_space, env.action_space
        episode = gym.spec(registered_id(env_id)).max_episode_steps or random_episode_length(env)
    finally:
        env.close()
    discrete = isinstance(actions, spaces.Discrete)
    # Credit reaches about a quarter of an episode back: 0.98 for 200-step episodes, 0.996 for 1000.
    gamma = round(min(0.999, max(0.98, 1 - 4 / episode)), 4)
    horizon = round(1 / (1 - gamma))
    timesteps = max(MIN_TIMESTEPS, math.ceil(EPISODES_PER_RUN * episode / 10_000) * 10_000)
    ppo = PPOConfig(
        num_envs=8,
        num_steps=256,
        gamma=gamma,
        update_epochs=10,
        num_minibatches=8,
        learning_rate=3e-4,
        ent_coef=0.01 if discrete else 0.0,
        norm_obs=needs_obs_normalization(observations),
        norm_reward=True,
    )
    return EnvSettings(
        ppo=ppo,
        timesteps=timesteps,
        # A segment spans PPO's horizon: the labels check the learned reward only over a segment, and PPO adds it
        # up over its horizon, so a bias per step that 50-step segments cannot show is worth 5 times more to PPO
        # at 250 (LunarLander hovered forever, its hovering a little above the ended state in each 50-step window).
        segment_length=max(2, min(horizon, episode // 4)),
        # Nobody has checked that this env's initial policy shows behaviour worth comparing: a MountainCar whose
        # car never leaves the valley yields answers about fuel alone, and its model is never trusted.
        explore_until_trusted=True,
        # Nor whether its episodes end one way or several (a lander lands or crashes), nor whether its reward pays
        # for reaching a state (a shaping term) rather than for being in it: the step's change of observation lets
        # the model pay a lander's touchdown once, where a reward of the state alone pays for sitting on the pad.
        reward_model=RewardModelConfig(terminal_reward=True, use_changes=True),
        # Labels until the end: a model frozen at 75% of the run was exploited in the last quarter (LunarLander fell
        # from about 200 to 85 on one seed), and its last labels are about the states the final policy visits.
        label_schedule_end=1.0,
        why=(
            "No entry: 8 envs x 256 steps, 10 epochs of 256-sample minibatches and a 3e-4 learning rate (SB3's "
            "PPO defaults, which rl-zoo3's untuned entries keep), reward normalization as rl-zoo3's "
            "`normalize: true` (the reward's scale is unknown), observation normalization where the bounds are "
            "unbounded or far apart, gamma from the episode length, segments as long as its horizon, a small "
            f"entropy bonus for discrete actions, {EPISODES_PER_RUN} episodes of env steps, state-entropy "
            "exploration until the reward model is trusted, a learned reward for how an episode ended and for each "
            "step's change of observation, and labels asked until the end of the run."
        ),
    )


def settings_for(env_id: str) -> EnvSettings:
    """The defaults for `env_id`: its entry, or `default_settings` for an env without one."""
    return ENV_SETTINGS.get(env_id) or default_settings(env_id)


def ppo_settings_for(env_id: str) -> PPOConfig:
    """PPO hyperparameters for `env_id` (see `settings_for`)."""
    return settings_for(env_id).ppo

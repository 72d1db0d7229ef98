"""Per-env training defaults as data: PPO hyperparameters, run length and segment length, each with its reason.

`RunConfig.resolved()` takes from here what a run config leaves open. An env without an entry gets `FALLBACK`.
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.config import PPOConfig


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
    """Where these values come from and why they differ from `FALLBACK`."""
    exploration_steps: int = 0
    """Env steps of state-entropy pre-training before the first query (worker/exploration.py)."""


FALLBACK = EnvSettings(
    ppo=PPOConfig(),
    timesteps=200_000,
    segment_length=50,
    why="CleanRL's ppo.py defaults without its entropy bonus, and a generous budget for an env nobody has tuned.",
)

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
            num_steps=1024, gamma=0.9, update_epochs=10, num_minibatches=8, learning_rate=2e-3, max_grad_norm=2.0
        ),
        timesteps=60_000,
        segment_length=50,
        why=(
            "rl-zoo3's settings (without gSDE) with 512-sample minibatches, twice the learning rate and a looser "
            "gradient clip: the same progress per env step for 1/8 of the gradient steps."
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
    "MountainCarContinuous-v0": EnvSettings(
        ppo=PPOConfig(
            num_envs=8,
            num_steps=256,
            gae_lambda=0.9,
            update_epochs=10,
            num_minibatches=8,
            learning_rate=3e-4,
            ent_coef=0.005,
            max_grad_norm=5.0,
            norm_obs=True,
        ),
        timesteps=150_000,
        segment_length=50,
        why=(
            "Partly rl-zoo3's (observation normalization, lambda 0.9, 10 epochs, 256-sample minibatches, gradient "
            "clip 5, an entropy bonus near its 0.0043); learning rate 3e-4, clip 0.2 and gamma 0.99 are CleanRL's "
            "continuous-action defaults. The velocity spans +-0.07 against the position's 1.8, hence the "
            "normalization; no measurement is recorded for the other departures."
        ),
    ),
}


def settings_for(env_id: str) -> EnvSettings:
    """The defaults for `env_id`; `FALLBACK` for an env without an entry (the id is not validated here)."""
    return ENV_SETTINGS.get(env_id, FALLBACK)


def ppo_settings_for(env_id: str) -> PPOConfig:
    """PPO hyperparameters tuned for `env_id` on its true reward; CleanRL's defaults for other envs."""
    return settings_for(env_id).ppo

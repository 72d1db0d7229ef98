"""Per-env settings as data, and how a run config picks them up and carries them through its dict form."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from gymnasium import spaces

from worker.config import PPOConfig, RunConfig
from worker.env_settings import (
    ENV_SETTINGS,
    MIN_TIMESTEPS,
    default_settings,
    needs_obs_normalization,
    ppo_settings_for,
    settings_for,
)


def test_every_env_entry_gives_its_reason_and_valid_settings():
    for env_id, settings in ENV_SETTINGS.items():
        assert settings.why.strip(), env_id
        assert settings.timesteps >= settings.ppo.batch_size, env_id
        assert settings.segment_length >= 1, env_id


def test_an_env_without_an_entry_gets_defaults_derived_from_its_spaces_and_episode_length():
    assert "MountainCarContinuous-v0" not in ENV_SETTINGS
    car = settings_for("MountainCarContinuous-v0")  # 999-step episodes, position 1.8 wide, velocity 0.14
    assert car is default_settings("MountainCarContinuous-v0")
    assert (car.timesteps, car.ppo.gamma, car.ppo.norm_obs, car.ppo.norm_reward) == (1_000_000, 0.996, True, True)
    assert car.ppo.ent_coef == 0.0  # continuous actions
    assert car.segment_length == 249  # PPO's horizon, 1 / (1 - 0.996), but no more than a quarter of an episode
    pendulum = default_settings("Pendulum-v1")  # 200-step episodes, bounds 2, 2 and 16 apart
    assert (pendulum.timesteps, pendulum.ppo.gamma, pendulum.ppo.norm_obs) == (MIN_TIMESTEPS, 0.98, True)
    assert pendulum.segment_length == 50
    assert default_settings("CartPole-v1").ppo.ent_coef == 0.01  # discrete; infinite bounds: normalized
    assert default_settings("CartPole-v1").ppo.norm_obs
    assert ppo_settings_for("MountainCar-v0") == default_settings("MountainCar-v0").ppo


def test_a_users_env_without_a_time_limit_has_its_episode_length_measured():
    walk = default_settings("custom_envs:Walk")  # truncates itself after 20 steps; registered without a limit
    assert walk.segment_length == 5 and walk.ppo.gamma == 0.98 and walk.timesteps == MIN_TIMESTEPS


@pytest.mark.parametrize(
    ("low", "high", "normalize"),
    [([-1, -1], [1, 1], False), ([-1, -50], [1, 50], True), ([-1.2, -0.07], [0.6, 0.07], True),
     ([0, -np.inf], [1, np.inf], True)],
)
def test_observations_are_normalized_when_bounds_are_unbounded_wide_or_far_apart(low, high, normalize):
    space = spaces.Box(np.array(low, np.float32), np.array(high, np.float32))
    assert needs_obs_normalization(space) is normalize


def test_resolved_fills_timesteps_segment_length_and_ppo_from_the_env_settings():
    config = RunConfig(env_id="Pendulum-v1").resolved()
    assert config.timesteps == 80_000
    assert config.segment_length == 50
    assert config.ppo == ENV_SETTINGS["Pendulum-v1"].ppo
    assert config.ppo.num_steps == 1024


def test_envs_without_an_entry_explore_until_the_reward_model_is_trusted_and_tuned_ones_do_not():
    assert RunConfig(env_id="MountainCarContinuous-v0").resolved().explore_until_trusted
    assert not RunConfig(env_id="CartPole-v1").resolved().explore_until_trusted
    told = RunConfig(env_id="MountainCarContinuous-v0", explore_until_trusted=False).resolved()
    assert not told.explore_until_trusted


def test_envs_without_an_entry_ask_labels_until_the_end_of_the_run_and_tuned_ones_by_three_quarters():
    assert RunConfig(env_id="MountainCarContinuous-v0").resolved().label_schedule_end == 1.0
    assert RunConfig(env_id="CartPole-v1").resolved().label_schedule_end == 0.75
    assert RunConfig(env_id="MountainCarContinuous-v0", label_schedule_end=0.5).resolved().label_schedule_end == 0.5


def test_resolved_keeps_what_the_run_config_gives():
    ppo = PPOConfig(num_envs=2, num_steps=8)
    config = RunConfig(env_id="CartPole-v1", timesteps=1234, segment_length=7, ppo=ppo).resolved()
    assert (config.timesteps, config.segment_length, config.ppo) == (1234, 7, ppo)


def test_to_dict_and_from_dict_round_trip_the_ppo_settings_through_json():
    config = replace(RunConfig(env_id="MountainCarContinuous-v0").resolved(), seed=3)
    data = json.loads(json.dumps(config.to_dict()))
    assert data["ppo"]["norm_obs"] is True
    assert RunConfig.from_dict(data) == config


def test_a_dict_saved_before_runs_carried_ppo_settings_still_loads():
    data = RunConfig(env_id="Acrobot-v1").to_dict()
    del data["ppo"]
    loaded = RunConfig.from_dict(data)
    assert loaded.ppo is None
    assert loaded.resolved().ppo == ENV_SETTINGS["Acrobot-v1"].ppo


def test_ppo_config_rejects_an_unknown_activation():
    with pytest.raises(ValueError, match=r"activation must be one of \['relu', 'tanh'\]"):
        PPOConfig(activation="gelu")

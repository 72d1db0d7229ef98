"""Per-env settings as data, and how a run config picks them up and carries them through its dict form."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from worker.config import PPOConfig, RunConfig
from worker.env_settings import ENV_SETTINGS, FALLBACK, ppo_settings_for, settings_for


def test_every_env_entry_gives_its_reason_and_valid_settings():
    for env_id, settings in ENV_SETTINGS.items():
        assert settings.why.strip(), env_id
        assert settings.timesteps >= settings.ppo.batch_size, env_id
        assert settings.segment_length >= 1, env_id


def test_an_env_without_an_entry_gets_the_fallback():
    assert settings_for("LunarLander-v3") is FALLBACK
    assert ppo_settings_for("LunarLander-v3") == PPOConfig()


def test_resolved_fills_timesteps_segment_length_and_ppo_from_the_env_settings():
    config = RunConfig(env_id="Pendulum-v1").resolved()
    assert config.timesteps == 60_000
    assert config.segment_length == 50
    assert config.ppo == ENV_SETTINGS["Pendulum-v1"].ppo
    assert config.ppo.num_steps == 1024


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

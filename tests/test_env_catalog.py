"""The web process's list of runnable environments (app/env_catalog.py) matches what the worker runs."""

from __future__ import annotations

import pytest

from app.env_catalog import ENVS
from worker.config import RunConfig
from worker.env_settings import ENV_SETTINGS, settings_for
from worker.envs import describe_env, is_mujoco_env
from worker.render import can_render_from_obs


def test_the_catalog_lists_every_env_the_worker_has_settings_for() -> None:
    # and MountainCarContinuous-v0, which trains on the defaults for envs without an entry
    assert set(ENVS) == set(ENV_SETTINGS) | {"MountainCarContinuous-v0"}


@pytest.mark.parametrize("env_id", sorted(ENVS))
def test_catalog_entry_matches_the_worker(env_id: str) -> None:
    entry = ENVS[env_id]
    spaces = describe_env(env_id)
    assert entry["obs_shape"] == list(spaces.obs_shape)
    assert entry["action_shape"] == ([] if spaces.discrete else list(spaces.action_shape))
    assert entry["action_dtype"] == ("int64" if spaces.discrete else "float32")
    assert entry["num_actions"] == (spaces.num_actions if spaces.discrete else None)
    assert entry["segment_length"] == settings_for(env_id).segment_length
    assert entry["label_budget"] == RunConfig().labels
    # Clips are drawn from the observations, or for MuJoCo by replaying the segment from its physics state.
    assert entry["renders_clips"] == (can_render_from_obs(env_id) or is_mujoco_env(env_id))

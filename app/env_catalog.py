"""The environments the worker can run, as data the web process can read without importing the worker.

The new-experiment form offers these and fills the experiment's declared spaces from them. The web process
never imports gymnasium, so the spaces are spelled out here; tests/test_env_catalog.py checks every entry
against the worker's own description of the env (worker.envs.describe_env, worker.env_settings) so the two
cannot drift apart.
"""

from __future__ import annotations

from typing import Any

# env id -> obs_shape, action_shape, action_dtype, num_actions, segment_length (the worker's default for the
# env), label_budget (RunConfig's default), renders_clips (the worker can draw clips of its own rollouts, so
# human raters can label them).
ENVS: dict[str, dict[str, Any]] = {
    "CartPole-v1": {
        "obs_shape": [4],
        "action_shape": [],
        "action_dtype": "int64",
        "num_actions": 2,
        "segment_length": 50,
        "label_budget": 100,
        "renders_clips": True,
    },
    "Acrobot-v1": {
        "obs_shape": [6],
        "action_shape": [],
        "action_dtype": "int64",
        "num_actions": 3,
        "segment_length": 50,
        "label_budget": 100,
        "renders_clips": True,
    },
    "Pendulum-v1": {
        "obs_shape": [3],
        "action_shape": [1],
        "action_dtype": "float32",
        "num_actions": None,
        "segment_length": 50,
        "label_budget": 100,
        "renders_clips": True,
    },
    "MountainCarContinuous-v0": {
        "obs_shape": [2],
        "action_shape": [1],
        "action_dtype": "float32",
        "num_actions": None,
        "segment_length": 249,
        "label_budget": 100,
        "renders_clips": True,
    },
    "rlhf/SparseGoal-v0": {
        "obs_shape": [1],
        "action_shape": [],
        "action_dtype": "int64",
        "num_actions": 2,
        "segment_length": 25,
        "label_budget": 100,
        "renders_clips": False,
    },
    "HalfCheetah-v5": {
        "obs_shape": [17],
        "action_shape": [6],
        "action_dtype": "float32",
        "num_actions": None,
        "segment_length": 30,
        "label_budget": 100,
        "renders_clips": True,
    },
    "Hopper-v5": {
        "obs_shape": [11],
        "action_shape": [3],
        "action_dtype": "float32",
        "num_actions": None,
        "segment_length": 188,
        "label_budget": 100,
        "renders_clips": True,
    },
    "Walker2d-v5": {
        "obs_shape": [17],
        "action_shape": [6],
        "action_dtype": "float32",
        "num_actions": None,
        "segment_length": 188,
        "label_budget": 100,
        "renders_clips": True,
    },
    "Swimmer-v5": {
        "obs_shape": [8],
        "action_shape": [2],
        "action_dtype": "float32",
        "num_actions": None,
        "segment_length": 38,
        "label_budget": 100,
        "renders_clips": True,
    },
    "Ant-v5": {
        "obs_shape": [105],
        "action_shape": [8],
        "action_dtype": "float32",
        "num_actions": None,
        "segment_length": 30,
        "label_budget": 100,
        "renders_clips": True,
    },
    "Reacher-v5": {
        "obs_shape": [10],
        "action_shape": [2],
        "action_dtype": "float32",
        "num_actions": None,
        "segment_length": 25,
        "label_budget": 100,
        "renders_clips": True,
    },
}

"""Gymnasium environments for the worker: id validation, fast vector envs and what their spaces look like.

Every vector env made here uses Gymnasium's NEXT_STEP autoreset: the step that ends an episode returns the
episode's final observation, and the following step of that sub-env is a no-op that ignores its action,
returns the first observation of the next episode, reward 0 and terminated = truncated = False.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

from worker.goal_env import register_sparse_goal

register_sparse_goal()


# The one line shown when a MuJoCo env is asked for without the `mujoco` extra.
MUJOCO_MISSING = "{env_id} needs MuJoCo, which is not installed: pip install 'rlhf-loop[mujoco]'"


class EnvUnavailable(ValueError):
    """A registered env whose dependencies are not installed; the message says what to install, on one line."""


def is_mujoco_env(env_id: str) -> bool:
    """Whether `env_id` is one of Gymnasium's MuJoCo envs (HalfCheetah-v5, Hopper-v5, ...)."""
    entry_point = gym.spec(env_id).entry_point if env_id in gym.registry else None
    return isinstance(entry_point, str) and entry_point.startswith("gymnasium.envs.mujoco")


def mujoco_installed() -> bool:
    """Whether the `mujoco` package (the `mujoco` extra) can be imported."""
    return importlib.util.find_spec("mujoco") is not None


def import_env_module(module_name: str) -> None:
    """Import a user's module so that it can register its env ids (`--env-module`).

    The current directory is searched first, as `python -m` does, so `rlhf run` and `rlhf worker` started in
    a project's folder find its modules (the `rlhf` script alone would not).

    Raises:
        ValueError: naming the module and why it did not import.
    """
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        importlib.import_module(module_name)
    except Exception as error:  # the user's code: any error on import means the env can't be made
        where = " (searched the current directory and PYTHONPATH)" if isinstance(error, ModuleNotFoundError) else ""
        raise ValueError(
            f"cannot import env module '{module_name}': {type(error).__name__}: {error}{where}"
        ) from None


def registered_id(env_id: str) -> str:
    """The id in Gymnasium's registry that `env_id` names, registering a user's env class on first use.

    `env_id` is one of:
      - a registered id, "CartPole-v1";
      - Gymnasium's "module:Id": the module registers Id when imported, "examples.lantern:Lantern-v0";
      - "module:ClassName", a gymnasium.Env subclass in that module, registered here as ClassName (every
        process that makes the env calls this first, so a worker resolves what a run or an API call named).

    Raises:
        ValueError: "unknown env id 'X'", or what is wrong with the module or the class.
    """
    if ":" not in env_id:
        if env_id not in gym.registry:
            raise ValueError(f"unknown env id '{env_id}'")
        return env_id
    module_name, name = env_id.split(":", 1)
    import_env_module(module_name)
    if name in gym.registry:
        return name
    entry_point = getattr(importlib.import_module(module_name), name, None)
    if not (isinstance(entry_point, type) and issubclass(entry_point, gym.Env)):
        raise ValueError(
            f"env '{env_id}': module '{module_name}' registers no env id '{name}' and has no gymnasium.Env "
            f"subclass of that name"
        )
    gym.register(id=name, entry_point=f"{module_name}:{name}")  # the string form: one spec, any process
    return name


def validate_env_id(env_id: str) -> None:
    """Check that `env_id` names an environment (see `registered_id` for the forms it takes) whose dependencies
    are installed.

    Raises:
        ValueError: naming what is wrong.
        EnvUnavailable: for a MuJoCo env without the `mujoco` extra (a ValueError too).
    """
    name = registered_id(env_id)
    if is_mujoco_env(name) and not mujoco_installed():
        raise EnvUnavailable(MUJOCO_MISSING.format(env_id=env_id))


def has_native_vector_env(env_id: str) -> bool:
    """Whether Gymnasium ships a numpy vector env for `env_id` (e.g. CartPole-v1), much faster than "sync"."""
    entry_point = gym.spec(registered_id(env_id)).vector_entry_point
    # Jax-based vector envs ("phys2d") need jax; only plain numpy ones count as fast here.
    return isinstance(entry_point, str) and "phys2d" not in entry_point


def make_vec_env(env_id: str, num_envs: int, seed: int) -> VectorEnv:
    """Make a vector env of `num_envs` copies of `env_id`, seeded, with NEXT_STEP autoreset.

    Uses the env's native vector implementation when it has one (`vectorization_mode="vector_entry_point"`,
    e.g. CartPole-v1), otherwise Gymnasium's `SyncVectorEnv` in this process (env checker off, for speed).
    The env is reset once with `seed` (sub-env i gets seed + i in sync mode) and its action space seeded, so a
    later seedless `reset()` continues a fixed random stream.

    Args:
        env_id: a registered Gymnasium id.
        num_envs: number of sub-envs, at least 1.
        seed: seed for the sub-envs' random streams.

    Returns:
        The vector env; call `reset()` (no seed needed) before stepping it.

    Raises:
        ValueError: for an unknown id or `num_envs < 1`.
    """
    validate_env_id(env_id)  # a MuJoCo env without the extra: the install line, not an import error
    name = registered_id(env_id)
    if num_envs < 1:
        raise ValueError(f"num_envs must be at least 1, got {num_envs}")
    if has_native_vector_env(name):
        env = gym.make_vec(name, num_envs=num_envs, vectorization_mode="vector_entry_point")
    else:
        env = gym.make_vec(
            name,
            num_envs=num_envs,
            vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": AutoresetMode.NEXT_STEP},
            disable_env_checker=True,
        )
    mode = env.metadata.get("autoreset_mode")
    if mode != AutoresetMode.NEXT_STEP:
        env.close()
        raise ValueError(f"{env_id}: vector env autoreset mode is {mode}, the worker needs NEXT_STEP")
    env.reset(seed=seed)
    env.action_space.seed(seed)
    return env


def is_discrete(env: VectorEnv) -> bool:
    """Whether each sub-env's action space is `Discrete` (else it must be a `Box`)."""
    return isinstance(env.single_action_space, spaces.Discrete)


def obs_shape(env: VectorEnv) -> tuple[int, ...]:
    """Shape of one sub-env's observation, e.g. (4,) for CartPole-v1."""
    shape = env.single_observation_space.shape
    assert shape is not None
    return tuple(shape)


def action_shape(env: VectorEnv) -> tuple[int, ...]:
    """Shape of one sub-env's action: () for discrete, (action_dim,) for a Box."""
    shape = env.single_action_space.shape
    return tuple(shape) if shape is not None else ()


@dataclass(frozen=True)
class EnvSpaces:
    """What a policy needs to know about an env's spaces.

    Attributes:
        obs_shape: shape of one observation, e.g. (4,).
        action_shape: () for discrete actions, (action_dim,) for continuous.
        discrete: True for a `Discrete` action space.
        num_actions: number of discrete actions (0 for continuous).
        action_low: (action_dim,) float32 lower bounds (empty for discrete).
        action_high: (action_dim,) float32 upper bounds (empty for discrete).
    """

    obs_shape: tuple[int, ...]
    action_shape: tuple[int, ...]
    discrete: bool
    num_actions: int
    action_low: np.ndarray
    action_high: np.ndarray


def env_spaces(env: VectorEnv) -> EnvSpaces:
    """Describe a vector env's single observation and action spaces.

    Raises:
        ValueError: when the action space is neither `Discrete` nor a bounded `Box`, or observations are not
            a flat `Box`, naming what is supported.
    """
    obs_space = env.single_observation_space
    act_space = env.single_action_space
    if not isinstance(obs_space, spaces.Box) or len(obs_space.shape) != 1:
        raise ValueError(
            f"observation space {obs_space} is not supported: observations must be a flat Box (a vector of "
            f"numbers; no Dict, Tuple, image or discrete observations)"
        )
    if isinstance(act_space, spaces.Discrete):
        empty = np.zeros(0, dtype=np.float32)
        return EnvSpaces(obs_shape(env), (), True, int(act_space.n), empty, empty)
    if isinstance(act_space, spaces.Box) and len(act_space.shape) == 1 and act_space.is_bounded("both"):
        return EnvSpaces(
            obs_shape(env),
            action_shape(env),
            False,
            0,
            act_space.low.astype(np.float32),
            act_space.high.astype(np.float32),
        )
    raise ValueError(
        f"action space {act_space} is not supported: actions must be Discrete or a flat Box bounded on both "
        f"sides (no MultiDiscrete, MultiBinary, Dict or Tuple actions)"
    )


def describe_env(env_id: str) -> EnvSpaces:
    """`env_spaces` for an env id, without keeping an env around."""
    env = make_vec_env(env_id, num_envs=1, seed=0)
    try:
        return env_spaces(env)
    finally:
        env.close()


def physics_state(env: gym.Env) -> np.ndarray | None:
    """A MuJoCo env's full physics state, qpos then qvel as one (nq + nv,) float64 array; None for other envs.

    Together with the actions that follow, this is what a clip needs to replay a segment exactly
    (`worker.render.iter_frames`): MuJoCo steps deterministically from a given state.
    """
    data = getattr(env.unwrapped, "data", None)
    if data is None or not hasattr(data, "qpos"):
        return None
    return np.concatenate([data.qpos, data.qvel])


def vector_physics_states(envs: VectorEnv) -> np.ndarray | None:
    """(N, nq + nv) physics states of a sync vector env's MuJoCo sub-envs, or None for other envs."""
    sub_envs = getattr(envs, "envs", None)
    if not sub_envs:
        return None
    states = [physics_state(env) for env in sub_envs]
    if any(state is None for state in states):
        return None
    return np.stack(states)  # type: ignore[arg-type]


@functools.cache
def realtime_fps(env_id: str, cap: int = 60) -> int:
    """Frames per second at which a clip of one frame per env step plays in real time, at most `cap`.

    MuJoCo envs take 1/dt steps per simulated second (HalfCheetah 20, Hopper 125); above `cap` a clip plays in
    slow motion rather than at a rate browsers drop frames from. Other envs: 30.
    """
    if not is_mujoco_env(env_id):
        return 30
    env = gym.make(env_id)
    try:
        return max(1, min(cap, round(1.0 / env.unwrapped.dt)))  # type: ignore[attr-defined]
    finally:
        env.close()


def max_episode_steps(env_id: str) -> int | None:
    """The time limit registered for `env_id` (500 for CartPole-v1, 200 for Pendulum-v1), or None."""
    return gym.spec(registered_id(env_id)).max_episode_steps

"""Cutting fixed-length segments out of rollouts of the current policy.

Where episodes end is where much of the information lives. CartPole's true reward is +1 on every step, so two
segments cut from inside episodes always tie; what tells a good policy from a bad one is that its episodes
do not end. So a segment may run past its episode's termination: the steps after it are an absorbing "ended"
state (zero observation and action, `ended` True, zero true reward). The teacher then prefers the segment
that did not fail, the reward model learns a reward for "ended" like for any other state, and PPO can be
given rewards measured against it (see RewardEnsemble.set_normalization).

A time-limit truncation is not a failure: a segment never crosses one, nor the end of the rollout, where
what came next is unknown.

Also here: each step's change of observation (`step_changes`), which the reward model may see, computed alike
for a step, a rollout and a segment.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from worker.types import Segment


def segment_windows(
    terminated: np.ndarray, truncated: np.ndarray, valid: np.ndarray, length: int
) -> list[tuple[int, int, int]]:
    """Every place a segment can be cut from one rollout.

    Args:
        terminated: (T, N) bool, the episode terminated right after step t.
        truncated: (T, N) bool, the episode hit its time limit right after step t.
        valid: (T, N) bool, step t is a real transition (not an autoreset no-op).
        length: segment length L.

    Returns:
        (env index, first step, live steps) triples: steps first .. first+live-1 of that env are one episode's
        consecutive real steps, and live < L only when the episode terminated at the last of them.
    """
    steps, num_envs = terminated.shape
    windows = []
    for env in range(num_envs):
        run_start = None  # first step of the current run of consecutive real steps of one episode
        for t in range(steps):
            if not valid[t, env]:
                run_start = None
                continue
            if run_start is None:
                run_start = t
            if terminated[t, env]:
                # Windows that reach this termination, padded with the ended state.
                for first in range(max(run_start, t - length + 1), t + 1):
                    windows.append((env, first, t - first + 1))
                run_start = None
            elif truncated[t, env]:
                run_start = None
            elif t - run_start + 1 >= length:
                windows.append((env, t - length + 1, length))
    return windows


def cut_segments(
    obs: np.ndarray,
    actions: np.ndarray,
    true_rewards: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    valid: np.ndarray,
    length: int,
    count: int,
    rng: np.random.Generator,
    env_id: str = "",
    states: np.ndarray | None = None,
) -> list[Segment]:
    """Up to `count` segments of `length` steps drawn uniformly from the rollout's possible windows.

    Args:
        obs: (T, N, obs_dim) observations s_t.
        actions: (T, N, *action_shape) actions a_t.
        true_rewards: (T, N) rewards r(s_t, a_t).
        terminated, truncated, valid: (T, N) bool, as in `segment_windows`.
        length: segment length L.
        count: how many segments at most.
        rng: source of randomness for the choice of windows.
        env_id: recorded on each segment.
        states: (T, N, state_dim) MuJoCo physics states of s_t (`Rollout.states`), or None; each segment keeps
            the one at its first step as `start_state`.
    """
    windows = segment_windows(terminated, truncated, valid, length)
    if not windows:
        return []
    chosen = rng.choice(len(windows), size=min(count, len(windows)), replace=False)
    segments = []
    for i in sorted(chosen):
        env, first, live = windows[i]
        segment = _segment(obs, actions, true_rewards, env, first, live, length, env_id)
        if states is not None:
            segment = replace(segment, start_state=states[first, env].copy())
        segments.append(segment)
    return segments


def _segment(
    obs: np.ndarray,
    actions: np.ndarray,
    true_rewards: np.ndarray,
    env: int,
    first: int,
    live: int,
    length: int,
    env_id: str,
) -> Segment:
    seg_obs = np.zeros((length, *obs.shape[2:]), dtype=np.float32)
    seg_actions = np.zeros((length, *actions.shape[2:]), dtype=actions.dtype)
    seg_rewards = np.zeros(length, dtype=np.float32)
    seg_obs[:live] = obs[first : first + live, env]
    seg_actions[:live] = actions[first : first + live, env]
    seg_rewards[:live] = true_rewards[first : first + live, env]
    ended = np.arange(length) >= live
    return Segment(obs=seg_obs, actions=seg_actions, true_rewards=seg_rewards, ended=ended, env_id=env_id)


def step_changes(obs: np.ndarray, next_obs: np.ndarray, over: np.ndarray | bool) -> np.ndarray:
    """(..., obs_dim) float32 `next_obs - obs`, the reward model's `use_changes` input, zero where `over` (...):
    the episode ended on the step, or the next observation is not known."""
    return np.where(np.asarray(over)[..., None], 0.0, np.asarray(next_obs, np.float32) - obs).astype(np.float32)


def observation_changes(obs: np.ndarray, continues: np.ndarray) -> np.ndarray:
    """(T, ..., obs_dim) each row's next observation minus its own, along the first axis, where `continues`
    ((T, ...) bool: the next row holds the same episode's next observation), else zero; zero on the last row."""
    changes = np.zeros(obs.shape, dtype=np.float32)
    changes[:-1] = step_changes(obs[:-1], obs[1:], ~continues[:-1])
    return changes


def segment_changes(obs: np.ndarray, ended: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(S, L, obs_dim) each step's change of observation in S segments of equal length L, given their stacked
    (S, L, obs_dim) observations and (S, L) `ended` flags, and (S, L) where it is known: the next step is in the
    segment and alive (not on the last step, nor the one an episode ended on)."""
    next_is_live = np.pad(~ended[:, 1:], ((0, 0), (0, 1)))
    return observation_changes(obs.swapaxes(0, 1), next_is_live.swapaxes(0, 1)).swapaxes(0, 1), next_is_live

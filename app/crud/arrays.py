"""Segment arrays: checking incoming ones against an experiment's declared spaces, and unpacking
stored ones. No database access: storage is `app.crud.segments`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from app.errors import Invalid
from app.models import (
    Experiment,
    Segment,
)
from app.schemas import SegmentIn


@dataclass(frozen=True)
class SegmentArrays:
    """A stored segment's arrays: obs (L, *obs_shape), actions (L, *action_shape), true_rewards (L,) float32
    (NaN when unknown), ended (L,) bool."""

    obs: np.ndarray
    actions: np.ndarray
    true_rewards: np.ndarray
    ended: np.ndarray


def _to_array(values: Any, dtype: str, field: str) -> np.ndarray:
    try:
        array = np.asarray(values)
    except ValueError as error:  # ragged nesting
        raise Invalid(field, "ragged array: rows differ in length") from error
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise Invalid(field, "must be a (nested) list of numbers")
    if np.dtype(dtype).kind in "iu":
        if array.dtype.kind == "b" or (array.dtype.kind == "f" and array.size and not np.all(array == np.round(array))):
            raise Invalid(field, f"must hold integers ({dtype})")
        if array.dtype.kind == "f" and array.size and not np.all(np.isfinite(array)):
            raise Invalid(field, "must not contain NaN or infinity")
        info = np.iinfo(dtype)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise Invalid(field, f"values out of range for {dtype}")
    elif array.dtype.kind == "b":
        raise Invalid(field, "must hold numbers, not booleans")
    with np.errstate(over="ignore", invalid="ignore"):  # overflow becomes inf, refused just below
        converted = array.astype(dtype)
    if converted.dtype.kind == "f" and not np.all(np.isfinite(converted)):
        raise Invalid(field, "must not contain NaN or infinity (or values too large for " + dtype + ")")
    return converted


def validate_segment(experiment: Experiment, segment: SegmentIn, field: str) -> SegmentArrays:
    """Check one incoming segment against the experiment's declared spaces; raise Invalid naming the field."""
    obs = _to_array(segment.obs, experiment.obs_dtype, f"{field}.obs")
    length = obs.shape[0]
    if obs.shape[1:] != tuple(experiment.obs_shape):
        raise Invalid(
            f"{field}.obs",
            f"shape {list(obs.shape)} does not match (L, *obs_shape) = (L, {experiment.obs_shape})",
        )
    actions = _to_array(segment.actions, experiment.action_dtype, f"{field}.actions")
    if actions.shape != (length, *experiment.action_shape):
        raise Invalid(
            f"{field}.actions",
            f"shape {list(actions.shape)} does not match (L, *action_shape) = {[length, *experiment.action_shape]}",
        )
    if (
        experiment.num_actions is not None
        and actions.size
        and (actions.min() < 0 or actions.max() >= experiment.num_actions)
    ):
        raise Invalid(f"{field}.actions", f"discrete actions must lie in [0, {experiment.num_actions})")
    if segment.true_rewards is None:
        true_rewards = np.full(length, np.nan, dtype=np.float32)
    else:
        true_rewards = _to_array(segment.true_rewards, "float32", f"{field}.true_rewards")
        if true_rewards.shape != (length,):
            raise Invalid(f"{field}.true_rewards", f"shape {list(true_rewards.shape)} does not match (L,) = [{length}]")
    ended = np.zeros(length, dtype=bool) if segment.ended is None else np.asarray(segment.ended, dtype=bool)
    if ended.shape != (length,):
        raise Invalid(f"{field}.ended", f"shape {list(ended.shape)} does not match (L,) = [{length}]")
    if segment.render is not None and segment.render.actions is not None:
        replay = _to_array(segment.render.actions, experiment.action_dtype, f"{field}.render.actions")
        if replay.shape[1:] != tuple(experiment.action_shape):
            raise Invalid(f"{field}.render.actions", "each action must have the experiment's action_shape")
        if segment.render.first_frame + length > replay.shape[0] + 1:
            raise Invalid(f"{field}.render.first_frame", "the replay is shorter than first_frame + L frames")
    return SegmentArrays(obs=obs, actions=actions, true_rewards=true_rewards, ended=ended)


def segment_arrays(segment: Segment) -> SegmentArrays:
    """Unpack a stored segment's arrays (copies, so callers may write to them)."""
    obs = np.frombuffer(segment.obs, dtype=segment.obs_dtype).reshape(segment.obs_shape).copy()
    actions = np.frombuffer(segment.actions, dtype=segment.actions_dtype).reshape(segment.actions_shape).copy()
    if segment.true_rewards is None:
        true_rewards = np.full(segment.length, np.nan, dtype=np.float32)
    else:
        true_rewards = np.frombuffer(segment.true_rewards, dtype=np.float32).copy()
    ended = np.frombuffer(segment.ended, dtype=bool).copy()
    return SegmentArrays(obs=obs, actions=actions, true_rewards=true_rewards, ended=ended)

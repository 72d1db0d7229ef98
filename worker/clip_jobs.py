"""Clip jobs: render a segment's replay (or encode its uploaded frames) once per content hash, for raters."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from worker.envs import registered_id
from worker.render import encode_clip, render_clip, render_observations
from worker.store import ExperimentStore, RenderJob, default_worker_id

logger = logging.getLogger("rlhf.worker.clip_jobs")

RENDERER_VERSION = 2  # bump when rendering or encoding changes, so cached clips are not reused


def _clip_paths(content_hash: str) -> tuple[str, str]:
    folder = content_hash[:2]
    return f"{folder}/{content_hash}.mp4", f"{folder}/{content_hash}.jpg"


def render_spec_hash(spec: dict[str, Any], actions: list[Any], frame_count: int) -> str:
    """Content hash of a replay: the same env, seed, start state, actions and frame range give the same clip."""
    key = {
        "v": RENDERER_VERSION,
        "env_id": spec["env_id"],
        "seed": spec["seed"],
        "actions": actions,
        "first_frame": spec.get("first_frame", 0),
        "frames": frame_count,
        "fps": spec.get("fps", 30),
    }
    if spec.get("start_state") is not None:  # absent from the key otherwise, so older clips keep their hash
        key["start_state"] = spec["start_state"]
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def frames_hash(frames: np.ndarray, fps: int) -> str:
    digest = hashlib.sha256(f"v{RENDERER_VERSION}:{frames.shape}:{fps}:".encode())
    digest.update(np.ascontiguousarray(frames).data)
    return digest.hexdigest()


def make_clip(store: ExperimentStore, job: RenderJob, clip_dir: Path) -> str:
    """Render (or take uploaded frames), encode once per content hash, and attach the clip to the segment.

    Returns:
        The clip's content hash.
    """
    payload = job.payload
    frames_path = payload.get("frames_path")
    if frames_path or payload.get("from_obs"):
        if frames_path:
            frames = np.load(str(frames_path), allow_pickle=False)
        else:  # the worker's own rollouts: restore the env state from each observation
            segment = store.segment(job.segment_id)
            frames = render_observations(segment.env_id, segment.obs, segment.ended)
        fps = int(payload.get("fps", 30))
        content_hash = frames_hash(frames, fps)
        video, poster = _clip_paths(content_hash)
        cached = store.clip(content_hash)
        if cached is None or not (clip_dir / cached.video_path).is_file():
            encode_clip(frames, clip_dir / video, fps=fps)
        info = {"frame_count": len(frames), "width": frames.shape[2] // 2 * 2, "height": frames.shape[1] // 2 * 2}
    else:
        spec = store.render_spec(job.segment_id)
        if spec is None:
            raise ValueError(f"segment {job.segment_id} has no render spec and no uploaded frames")
        segment = store.segment(job.segment_id)
        actions = spec.get("actions")
        if actions is None:
            actions = segment.actions.tolist()
        fps = int(spec.get("fps", 30))
        content_hash = render_spec_hash(spec, actions, len(segment))
        video, poster = _clip_paths(content_hash)
        cached = store.clip(content_hash)
        if cached is not None and (clip_dir / cached.video_path).is_file():
            info = {"frame_count": cached.frame_count, "width": cached.width, "height": cached.height}
        else:
            rendered = render_clip(
                spec["env_id"],
                int(spec["seed"]),
                actions,
                clip_dir / video,
                fps=fps,
                first_frame=int(spec.get("first_frame", 0)),
                frame_count=len(segment),
                start_state=spec.get("start_state"),
            )
            info = {k: rendered[k] for k in ("frame_count", "width", "height")}
    store.attach_clip(
        job.segment_id,
        {
            "content_hash": content_hash,
            "video_path": video,
            "poster_path": poster,
            "fps": fps,
            "size_bytes": (clip_dir / video).stat().st_size,
            **info,
        },
    )
    if frames_path:
        Path(frames_path).unlink(missing_ok=True)
    return content_hash


def process_clip_jobs(store: ExperimentStore, clip_dir: Path, limit: int = 10, worker_id: str | None = None) -> int:
    """Claim up to `limit` render jobs and make their clips; a failed job is retried, then marked failed.

    Returns:
        How many jobs completed.
    """
    worker_id = worker_id or default_worker_id()
    done = 0
    for job in store.claim_render_jobs(worker_id, limit):
        try:
            content_hash = make_clip(store, job, clip_dir)
        except Exception as error:  # one bad clip must not stop the others; the job records why
            logger.exception("render job %s for segment %s failed", job.id, job.segment_id)
            store.fail_render_job(job, worker_id, f"{type(error).__name__}: {error}")
            continue
        store.complete_job(job.id, worker_id, {"content_hash": content_hash})
        done += 1
    return done


def render_policy_clip(
    act: Callable[[np.ndarray], np.ndarray],
    env_id: str,
    path: Path,
    seed: int = 0,
    max_frames: int = 150,
    fps: int = 30,
) -> dict[str, Any]:
    """Roll out a policy in one env from env.reset(seed=seed) and encode what it does as a clip.

    Shows the researcher what the labels have taught so far (the experiment page plays it beside the plots).

    Args:
        act: the policy: (1, obs_dim) float32 observations -> (1,) or (1, action_dim) env actions.
        env_id: a Gymnasium id with an rgb_array renderer.
        path: the .mp4 to write (its poster goes beside it).
        seed: reset seed (the same start state every time, so clips of successive policies compare).
        max_frames: the clip ends here, or earlier when the episode does.
        fps: frames per second of the clip.

    Returns:
        What `encode_clip` returns: frame_count, width, height, size_bytes, poster.
    """
    env = gym.make(registered_id(env_id), render_mode="rgb_array")
    try:
        obs, _ = env.reset(seed=seed)
        frames = [np.asarray(env.render())]
        for _ in range(max_frames - 1):
            action = act(np.asarray(obs, dtype=np.float32)[None])[0]
            obs, _reward, terminated, truncated, _ = env.step(action)
            frames.append(np.asarray(env.render()))
            if terminated or truncated:
                break
    finally:
        env.close()
    return encode_clip(frames, path, fps=fps)

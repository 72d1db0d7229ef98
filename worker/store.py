"""The worker's one bridge into the data service: database rows ↔ worker types, and the clip jobs.

Everything else in `worker/` takes and returns frozen dataclasses and arrays; this module talks to
`app.crud` (same write paths and validation as the API).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from app import crud
from app.models import Segment as SegmentRow
from worker.render import encode_clip, render_clip, render_observations
from worker.types import Segment

logger = logging.getLogger("rlhf.worker.store")

RENDERER_VERSION = 2  # bump when rendering or encoding changes, so cached clips are not reused


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def segment_from_row(row: SegmentRow) -> Segment:
    """A stored segment as the learning code's Segment (true_rewards NaN when unknown)."""
    arrays = crud.segment_arrays(row)
    return Segment(
        obs=arrays.obs.astype(np.float32, copy=False),
        actions=arrays.actions,
        true_rewards=arrays.true_rewards,
        ended=arrays.ended,
        env_id=row.env_id,
    )


def _clip_paths(content_hash: str) -> tuple[str, str]:
    folder = content_hash[:2]
    return f"{folder}/{content_hash}.mp4", f"{folder}/{content_hash}.jpg"


def render_spec_hash(spec: dict[str, Any], actions: list[Any], frame_count: int) -> str:
    """Content hash of a replay: the same env, seed, actions and frame range always give the same clip."""
    key = {
        "v": RENDERER_VERSION,
        "env_id": spec["env_id"],
        "seed": spec["seed"],
        "actions": actions,
        "first_frame": spec.get("first_frame", 0),
        "frames": frame_count,
        "fps": spec.get("fps", 30),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def frames_hash(frames: np.ndarray, fps: int) -> str:
    digest = hashlib.sha256(f"v{RENDERER_VERSION}:{frames.shape}:{fps}:".encode())
    digest.update(np.ascontiguousarray(frames).data)
    return digest.hexdigest()


def _cached(session: Session, clip_dir: Path, content_hash: str) -> bool:
    clip = crud.get_clip(session, content_hash=content_hash)
    return clip is not None and (clip_dir / clip.video_path).is_file()


def make_clip(session: Session, segment_id: int, payload: dict[str, Any], clip_dir: Path) -> str:
    """Render (or take uploaded frames), encode once per content hash, and attach the clip to the segment.

    Returns:
        The clip's content hash.
    """
    segment = crud.get_segment(session, segment_id=segment_id)
    frames_path = payload.get("frames_path")
    from_obs = bool(payload.get("from_obs"))
    if frames_path or from_obs:
        if from_obs:  # the worker's own rollouts: restore the env state from each observation
            arrays = crud.segment_arrays(segment)
            frames = render_observations(segment.env_id, arrays.obs, arrays.ended)
        else:
            frames = np.load(str(frames_path), allow_pickle=False)
        fps = int(payload.get("fps", 30))
        content_hash = frames_hash(frames, fps)
        video, poster = _clip_paths(content_hash)
        if not _cached(session, clip_dir, content_hash):
            encode_clip(frames, clip_dir / video, fps=fps)
        info = {
            "frame_count": len(frames),
            "width": frames.shape[2] // 2 * 2,
            "height": frames.shape[1] // 2 * 2,
        }
    else:
        spec = segment.render_spec
        if spec is None:
            raise ValueError(f"segment {segment_id} has no render spec and no uploaded frames")
        actions = spec.get("actions")
        if actions is None:
            actions = crud.segment_arrays(segment).actions.tolist()
        fps = int(spec.get("fps", 30))
        content_hash = render_spec_hash(spec, actions, segment.length)
        video, poster = _clip_paths(content_hash)
        if _cached(session, clip_dir, content_hash):
            clip = crud.get_clip(session, content_hash=content_hash)
            assert clip is not None
            info = {"frame_count": clip.frame_count, "width": clip.width, "height": clip.height}
        else:
            rendered = render_clip(
                spec["env_id"],
                int(spec["seed"]),
                actions,
                clip_dir / video,
                fps=fps,
                first_frame=int(spec.get("first_frame", 0)),
                frame_count=segment.length,
            )
            info = {k: rendered[k] for k in ("frame_count", "width", "height")}
    session.rollback()  # end the read transaction before attach_clip's write transaction
    crud.attach_clip(
        session,
        segment_id=segment_id,
        clip={
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


def process_clip_jobs(
    session_factory: sessionmaker[Session],
    clip_dir: Path,
    limit: int = 10,
    worker_id: str | None = None,
) -> int:
    """Claim up to `limit` render_clip jobs and make their clips; a failed job is retried, then marked failed.

    Returns:
        How many jobs completed.
    """
    worker_id = worker_id or default_worker_id()
    done = 0
    with session_factory() as session:
        jobs = crud.claim_jobs(session, worker_id=worker_id, kinds=[crud.RENDER_CLIP_JOB], limit=limit)
        for job in jobs:
            segment_id = int(job.payload["segment_id"])
            try:
                content_hash = make_clip(session, segment_id, job.payload, clip_dir)
            except Exception as error:  # one bad clip must not stop the others; the job records why
                session.rollback()
                logger.exception("render job %s for segment %s failed", job.id, segment_id)
                crud.fail_job(session, job_id=job.id, worker_id=worker_id, error=f"{type(error).__name__}: {error}")
                if crud.get_job(session, job_id=job.id).status == "failed":
                    session.rollback()
                    crud.mark_clip_failed(session, segment_id=segment_id)
                continue
            crud.complete_job(session, job_id=job.id, worker_id=worker_id, result={"content_hash": content_hash})
            done += 1
    return done

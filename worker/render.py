"""Clips for the rater page: replay a segment in its environment and encode the frames as web-ready MP4.

A leaf module (gymnasium, numpy, imageio; no database or web code). The format is the one FACTS.md found
Chromium here plays: MP4/H.264, yuv420p, even width and height, moov atom first (`+faststart`) so playback
starts before the whole file arrives.

Speed: ffmpeg's start-up is a large share of a 50-frame encode, so `ClipEncoder` keeps the next ffmpeg
process started and waiting for frames (one per frame size), and `render_clip` pipes each frame to it while
the next one renders, so rendering (this process) and encoding (ffmpeg) run on two cores at once.
"""

from __future__ import annotations

import atexit
import itertools
import os
import secrets
import threading
from collections.abc import Generator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

# rgb_array rendering needs no display or sound; without these pygame complains about XDG_RUNTIME_DIR.
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import gymnasium as gym  # noqa: E402
import imageio.v3 as iio  # noqa: E402
import imageio_ffmpeg  # noqa: E402
import numpy as np  # noqa: E402

# x264 settings: `ultrafast` + `zerolatency` cut encode time several-fold for these tiny clips; CRF 23 is
# x264's default quality. `+faststart` puts the moov atom before mdat.
X264_OUTPUT_PARAMS = ["-preset", "ultrafast", "-tune", "zerolatency", "-crf", "23", "-movflags", "+faststart"]

_envs: dict[str, gym.Env] = {}
_envs_lock = threading.Lock()


def _rgb_env(env_id: str) -> gym.Env:
    # Environments are reused: reset(seed=...) restores the exact start state, and make() plus pygame's
    # first surface cost more than a short clip's rendering.
    with _envs_lock:
        env = _envs.get(env_id)
        if env is None:
            env = gym.make(env_id, render_mode="rgb_array")
            _envs[env_id] = env
        return env


def iter_frames(env_id: str, seed: int, actions: Iterable[Any]) -> Iterator[np.ndarray]:
    """Yield (H, W, 3) uint8 frames of env.reset(seed=seed) followed by `actions`.

    Yields len(actions) + 1 frames: the start state, then the state after each action. After the episode
    ends the last frame repeats, so every clip of one segment length has the same number of frames.
    """
    env = _rgb_env(env_id)
    env.reset(seed=seed)
    frame = np.asarray(env.render())
    yield frame
    done = False
    for action in actions:
        if not done:
            _, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
            frame = np.asarray(env.render())
        yield frame


def render_frames(env_id: str, seed: int, actions: Sequence[Any]) -> list[np.ndarray]:
    """Replay `actions` from env.reset(seed=seed) with render_mode="rgb_array".

    Returns:
        len(actions) + 1 frames, each (H, W, 3) uint8 (see iter_frames).
    """
    return list(iter_frames(env_id, seed, actions))


def _even(frame: np.ndarray, downsample: int = 1) -> np.ndarray:
    """Keep every `downsample`-th pixel, then drop a last odd row or column (yuv420p needs even sizes)."""
    if downsample > 1:
        frame = frame[::downsample, ::downsample]
    height, width = frame.shape[:2]
    return frame[: height - height % 2, : width - width % 2]


class ClipEncoder:
    """Encodes MP4 clips through ffmpeg processes started one clip ahead, per (width, height, fps)."""

    def __init__(self, keep_warm: bool = True) -> None:
        self.keep_warm = keep_warm
        self._ready: dict[tuple[int, int, int], tuple[Generator[None, Any, None], Path]] = {}
        self._lock = threading.Lock()
        self._scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"rlhf-encoder-{os.getpid()}"

    def _start(self, width: int, height: int, fps: int) -> tuple[Generator[None, Any, None], Path]:
        self._scratch.mkdir(parents=True, exist_ok=True)
        path = self._scratch / f"{secrets.token_hex(8)}.mp4"
        writer = imageio_ffmpeg.write_frames(
            str(path),
            (width, height),
            fps=fps,
            codec="libx264",
            pix_fmt_in="rgb24",
            pix_fmt_out="yuv420p",
            quality=None,  # CRF comes from X264_OUTPUT_PARAMS
            macro_block_size=2,
            ffmpeg_log_level="error",
            output_params=X264_OUTPUT_PARAMS,
        )
        writer.send(None)  # starts the ffmpeg process, which then waits for frames
        return writer, path

    def _take(self, width: int, height: int, fps: int) -> tuple[Generator[None, Any, None], Path]:
        key = (width, height, fps)
        with self._lock:
            ready = self._ready.pop(key, None)
        started = ready or self._start(width, height, fps)
        if self.keep_warm:
            following = self._start(width, height, fps)
            with self._lock:
                self._ready[key] = following
        return started

    def encode(
        self, frames: Iterable[np.ndarray], path: Path, fps: int, downsample: int = 1
    ) -> tuple[np.ndarray, int, int]:
        """Write frames (each (H, W, 3) uint8) to `path` as MP4; frames may be a lazy iterator.

        `downsample` > 1 keeps every n-th pixel: encoding cost falls with the square (a 600x400 CartPole
        frame at 2 becomes 300x200).

        Returns:
            (first frame, frame count, bytes written).
        """
        iterator = iter(frames)
        try:
            first = _even(np.asarray(next(iterator), dtype=np.uint8), downsample)
        except StopIteration:
            raise ValueError("a clip needs at least one frame") from None
        height, width = first.shape[:2]
        writer, scratch_path = self._take(width, height, fps)
        count = 0
        try:
            for frame in _chain(first, iterator):
                frame = _even(np.asarray(frame, dtype=np.uint8), downsample) if count else first
                if frame.shape != first.shape:
                    raise ValueError(f"frame {count} has shape {frame.shape}, the first had {first.shape}")
                writer.send(np.ascontiguousarray(frame))
                count += 1
        except BaseException:
            writer.close()
            scratch_path.unlink(missing_ok=True)
            raise
        writer.close()  # ffmpeg finishes the file (and moves moov to the front)
        if not scratch_path.is_file() or scratch_path.stat().st_size == 0:
            raise RuntimeError(f"ffmpeg wrote no clip for {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(scratch_path, path)  # atomic: a half-written clip is never served
        return first, count, path.stat().st_size

    def close(self) -> None:
        """Stop the waiting ffmpeg processes."""
        with self._lock:
            ready, self._ready = list(self._ready.values()), {}
        for writer, scratch_path in ready:
            writer.close()
            scratch_path.unlink(missing_ok=True)


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


_default_encoder: ClipEncoder | None = None


def default_encoder() -> ClipEncoder:
    global _default_encoder
    if _default_encoder is None:
        _default_encoder = ClipEncoder(keep_warm=True)
        atexit.register(_default_encoder.close)
    return _default_encoder


def write_poster(frame: np.ndarray, path: Path) -> Path:
    """Save one frame as the clip's JPEG poster."""
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, frame, extension=".jpg", quality=85)
    return path


def encode_clip(frames: Iterable[np.ndarray], path: Path, fps: int = 30, encoder: ClipEncoder | None = None) -> Path:
    """Encode frames into an MP4/H.264 clip at `path` (moov first) and write its poster next to it.

    Args:
        frames: (H, W, 3) uint8 arrays, all the same size; an odd last row/column is dropped.
        path: where the .mp4 goes; the poster is `path` with suffix .jpg.
        fps: frames per second of the clip.

    Returns:
        The poster's path.
    """
    first, _count, _size = (encoder or default_encoder()).encode(frames, path, fps)
    return write_poster(first, path.with_suffix(".jpg"))


def render_clip(
    env_id: str,
    seed: int,
    actions: Sequence[Any],
    path: Path,
    fps: int = 30,
    first_frame: int = 0,
    frame_count: int | None = None,
    encoder: ClipEncoder | None = None,
    downsample: int = 1,
) -> dict[str, Any]:
    """Render a replay and encode it as it renders (frames go to ffmpeg while the next one is drawn).

    Keeps frames [first_frame, first_frame + frame_count) of `iter_frames(env_id, seed, actions)`.

    Returns:
        frame_count, width, height, size_bytes and poster (the poster's Path).
    """
    frames = iter_frames(env_id, seed, actions)
    stop = None if frame_count is None else first_frame + frame_count
    kept = itertools.islice(frames, first_frame, stop)
    first, count, size = (encoder or default_encoder()).encode(kept, path, fps, downsample)
    poster = write_poster(first, path.with_suffix(".jpg"))
    return {
        "frame_count": count,
        "width": first.shape[1],
        "height": first.shape[0],
        "size_bytes": size,
        "poster": poster,
    }


def _state_from_obs(env_id: str, obs: np.ndarray) -> np.ndarray:
    """The classic-control env state whose observation is `obs` (the observation is the state, or its trig)."""
    if env_id in ("CartPole-v1", "CartPole-v0", "MountainCar-v0", "MountainCarContinuous-v0"):
        return np.asarray(obs, dtype=np.float64)
    if env_id == "Pendulum-v1":  # obs = (cos θ, sin θ, θ̇)
        return np.array([np.arctan2(obs[1], obs[0]), obs[2]], dtype=np.float64)
    if env_id == "Acrobot-v1":  # obs = (cos θ1, sin θ1, cos θ2, sin θ2, θ̇1, θ̇2)
        return np.array([np.arctan2(obs[1], obs[0]), np.arctan2(obs[3], obs[2]), obs[4], obs[5]], dtype=np.float64)
    raise ValueError(f"cannot restore a {env_id} state from its observation; send a render spec or frames")


def can_render_from_obs(env_id: str) -> bool:
    try:
        _state_from_obs(env_id, np.zeros(6))
    except ValueError:
        return False
    return True


def render_observations(env_id: str, obs: np.ndarray, ended: np.ndarray) -> np.ndarray:
    """Frames of a segment drawn by setting the env's state to each observation (classic-control envs).

    Used for the worker's own rollouts, whose episodes began at vector-env resets we cannot replay. After the
    episode ended the last frame repeats, as in `iter_frames`.

    Args:
        env_id: a classic-control Gymnasium id (CartPole, MountainCar, Pendulum, Acrobot).
        obs: (L, obs_dim) observations.
        ended: (L,) bool, True in the absorbing state after the episode ended.

    Returns:
        (L, H, W, 3) uint8 frames.
    """
    env = _rgb_env(env_id)
    env.reset(seed=0)
    frames: list[np.ndarray] = []
    for t in range(len(obs)):
        if ended[t] and frames:
            frames.append(frames[-1])
            continue
        env.unwrapped.state = _state_from_obs(env_id, obs[t])  # type: ignore[attr-defined]
        frames.append(np.asarray(env.render()))
    return np.stack(frames)

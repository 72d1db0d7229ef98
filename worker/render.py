"""Clips for the rater page: replay a segment in its environment and encode the frames as web-ready MP4.

A leaf module (gymnasium, numpy, PyAV, imageio; no database or web code). The format is one Debian's headless
Chromium was seen to play: MP4/H.264, yuv420p, even width and height, moov atom first (`+faststart`) so playback
starts before the whole file arrives; the poster is a JPEG of the first frame.

Speed (bench/clips.py): libx264 runs in this process through PyAV, so there is no ffmpeg process to start and
no raw RGB to pipe to one; the RGB to yuv420p conversion takes swscale's SIMD path (TO_YUV420P); and
`render_clip` draws the next frames and converts them in a background thread while the current one is encoded
(per CartPole frame, about 0.4 ms drawing plus 0.6 converting there, 0.6 encoding here). The two overlap on
two cores because PyAV releases the GIL while it converts and encodes a frame. Only ever one thread renders, the
same one for the life of the process: pygame is not thread-safe (two CartPole envs drawing at once in two
threads garble each other's frames), and a MuJoCo env's OpenGL context works only in the thread that made it.

MuJoCo envs (the `mujoco` extra) are replayed from a segment's physics start state (`Segment.start_state`) with
its actions, rendered offscreen through EGL or OSMesa, chosen here before anything renders.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import secrets
import threading
from collections import deque
from collections.abc import Generator, Iterable, Iterator, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import closing
from pathlib import Path
from typing import Any, TypeVar

# rgb_array rendering needs no display or sound; without these pygame complains about XDG_RUNTIME_DIR.
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

# MuJoCo renders offscreen through an OpenGL library it is told of by MUJOCO_GL before it first renders: EGL
# (libegl1, with Mesa's llvmpipe on a machine without a GPU) or else OSMesa (libosmesa6). Without either, or with
# MUJOCO_GL unset and no display, gymnasium fails deep inside PyOpenGL; here a clip fails with GL_MISSING instead.
GL_LIBRARIES = {"egl": ("libEGL.so.1", "libEGL.so"), "osmesa": ("libOSMesa.so.8", "libOSMesa.so.6", "libOSMesa.so")}
GL_MISSING = (
    "MuJoCo clips need an OpenGL library for offscreen rendering: apt-get install libegl1 libgl1-mesa-dri "
    "(or libosmesa6 and MUJOCO_GL=osmesa)"
)


class RenderUnavailable(RuntimeError):
    """No OpenGL library MuJoCo can render with; the message says what to install, on one line."""


def _loadable(names: Sequence[str]) -> bool:
    for name in names:
        try:
            ctypes.CDLL(name)
        except OSError:
            continue
        return True
    return False


def choose_gl_backend(environ: MutableMapping[str, str] = os.environ) -> str | None:
    """The OpenGL backend MuJoCo will render with, set in `environ` when this picks it.

    MUJOCO_GL as given (None if it names egl or osmesa and that library does not load); else "egl" when libEGL
    loads, else "osmesa" when libOSMesa does; then MUJOCO_GL (and PYOPENGL_PLATFORM, which PyOpenGL reads once)
    are set to it. None when neither loads.
    """
    given = environ.get("MUJOCO_GL", "").strip().lower()
    if given:
        return None if given in GL_LIBRARIES and not _loadable(GL_LIBRARIES[given]) else given
    for backend, names in GL_LIBRARIES.items():
        if _loadable(names):
            environ["MUJOCO_GL"] = backend
            environ.setdefault("PYOPENGL_PLATFORM", backend)
            return backend
    return None


# Chosen at import, before anything in this process can render: MuJoCo's renderer reads MUJOCO_GL when made.
GL_BACKEND = choose_gl_backend()

import av  # noqa: E402
import gymnasium as gym  # noqa: E402
import imageio.v3 as iio  # noqa: E402
import numpy as np  # noqa: E402
from av.video.reformatter import Interpolation, VideoReformatter  # noqa: E402
from gymnasium.envs.registration import load_env_creator  # noqa: E402

from worker.envs import is_mujoco_env, registered_id, validate_env_id  # noqa: E402

# x264 settings: `ultrafast` cuts encode time several-fold for these tiny clips (and gives Constrained Baseline
# H.264, which every browser plays); CRF 23 is x264's default quality.
X264_OPTIONS = {"preset": "ultrafast", "crf": "23"}
# RGB to yuv420p: swscale's default path halves the chroma width in plain C; with FULL_CHR_H_INP it reads
# full-width chroma through its SIMD code and then scales it, a third faster here for the same picture.
TO_YUV420P = Interpolation.BILINEAR | Interpolation.FULL_CHR_H_INP
# How many frames the render thread may run ahead of the encoder.
PREFETCH_FRAMES = 8

T = TypeVar("T")

_envs: dict[str, gym.Env] = {}
_envs_lock = threading.Lock()


def _rgb_env(env_id: str) -> gym.Env:
    # Environments are reused: reset(seed=...) restores the exact start state, and make() plus pygame's
    # first surface cost more than a short clip's rendering.
    with _envs_lock:
        env = _envs.get(env_id)
        if env is None:
            validate_env_id(env_id)  # a missing `mujoco` extra: EnvUnavailable, one line
            if is_mujoco_env(env_id) and choose_gl_backend() is None:
                raise RenderUnavailable(GL_MISSING)
            if is_mujoco_env(env_id):
                env = _mujoco_rgb_env(env_id)
            else:
                env = gym.make(registered_id(env_id), render_mode="rgb_array")
                _draw_on_rgb_screen(env)
            _envs[env_id] = env
        return env


def _draw_on_rgb_screen(env: gym.Env) -> None:
    """Give a classic-control env a 24-bit screen whose bytes are in R, G, B order; the frames stay the same.

    Gymnasium's classic-control envs draw each frame on a 32-bit surface, blit it to `screen`, and return
    `np.array(pygame.surfarray.pixels3d(screen))`. From their 32-bit screen that copy gathers 3 bytes of every 4
    (1.4 of the 1.8 ms CPU a CartPole frame takes here); from this one it is a plain copy of contiguous RGB rows.
    tests/app/test_clips.py checks the frames are identical to env.render()'s own.
    """
    import pygame

    unwrapped = env.unwrapped
    if not type(unwrapped).__module__.startswith("gymnasium.envs.classic_control."):
        return
    env.reset(seed=0)
    env.render()  # makes the env's own screen (and initialises pygame's display module)
    screen = getattr(unwrapped, "screen", None)
    if isinstance(screen, pygame.Surface):
        rgb_bytes = (0x0000FF, 0x00FF00, 0xFF0000, 0)  # channel masks: red in the first byte (little-endian)
        unwrapped.screen = pygame.Surface(screen.get_size(), 0, 24, rgb_bytes)  # type: ignore[attr-defined]


# MuJoCo clips: 240x240 without shadows, reflections and skybox. On Mesa's software renderer that draws a
# HalfCheetah frame in about 43 ms instead of 408 at gymnasium's 480x480 with all three (one core, this machine).
MUJOCO_CLIP_SIZE = 240
MUJOCO_FLAGS_OFF = ("mjRND_SHADOW", "mjRND_REFLECTION", "mjRND_SKYBOX")


def _mujoco_rgb_env(env_id: str) -> gym.Env:
    import mujoco

    env = gym.make(env_id, render_mode="rgb_array", width=MUJOCO_CLIP_SIZE, height=MUJOCO_CLIP_SIZE)
    env.reset(seed=0)
    _first_frame(env, env_id)  # makes the renderer and its GL context, in this (the render) thread
    scene = env.unwrapped.mujoco_renderer.viewer.scn  # type: ignore[attr-defined]
    for flag in MUJOCO_FLAGS_OFF:
        scene.flags[getattr(mujoco.mjtRndFlag, flag)] = 0
    return env


def _first_frame(env: gym.Env, env_id: str) -> np.ndarray:
    try:
        return np.asarray(env.render())
    except Exception as error:  # a GL library that loads but cannot make a context fails here, in PyOpenGL
        if not is_mujoco_env(env_id):
            raise
        first_line = (str(error).splitlines() or [type(error).__name__])[0]
        raise RenderUnavailable(f"{GL_MISSING}; MUJOCO_GL={os.environ.get('MUJOCO_GL')}: {first_line}") from error


def iter_frames(
    env_id: str, seed: int, actions: Iterable[Any], start_state: Sequence[float] | np.ndarray | None = None
) -> Iterator[np.ndarray]:
    """Yield (H, W, 3) uint8 frames of env.reset(seed=seed) followed by `actions`.

    Yields len(actions) + 1 frames: the start state, then the state after each action. After the episode
    ends the last frame repeats, so every clip of one segment length has the same number of frames.

    Args:
        env_id: a Gymnasium id.
        seed: the reset seed.
        actions: the actions to replay.
        start_state: MuJoCo envs only: (nq + nv,) qpos then qvel set right after the reset (`Segment.start_state`),
            so the replay starts at a segment's first step. MuJoCo steps deterministically, so the frames show
            exactly the states the segment went through.

    Raises:
        RenderUnavailable: a MuJoCo env and no OpenGL library to render it with.
    """
    env = _rgb_env(env_id)
    env.reset(seed=seed)
    if start_state is not None:
        model = env.unwrapped.model  # type: ignore[attr-defined]
        state = np.asarray(start_state, dtype=np.float64)
        if state.shape != (model.nq + model.nv,):
            raise ValueError(f"{env_id}: a start state has nq + nv = {model.nq + model.nv} numbers, got {state.shape}")
        env.unwrapped.set_state(state[: model.nq], state[model.nq :])  # type: ignore[attr-defined]
    frame = _first_frame(env, env_id)
    yield frame
    done = False
    for action in actions:
        if not done:
            _, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
            frame = np.asarray(env.render())
        yield frame


def render_frames(
    env_id: str, seed: int, actions: Sequence[Any], start_state: Sequence[float] | np.ndarray | None = None
) -> list[np.ndarray]:
    """Replay `actions` from env.reset(seed=seed) (and `start_state`) with render_mode="rgb_array".

    Returns:
        len(actions) + 1 frames, each (H, W, 3) uint8 (see iter_frames).
    """
    return _RENDER_THREAD.submit(lambda: list(iter_frames(env_id, seed, actions, start_state))).result()


# The one thread that renders, for the life of the process. pygame is not thread-safe, and a MuJoCo env's OpenGL
# context is current in the thread that made it: drawn from any other thread, its frames come out black.
_RENDER_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clip-frames")


def _prefetch(items: Iterable[T], depth: int = PREFETCH_FRAMES) -> Generator[T, None, None]:
    """Yield `items` while the render thread produces up to `depth` of the next ones.

    Close the generator when done with it (`contextlib.closing`): that cancels the items not yet begun and
    waits for the one being made, so nothing else is left using the environment.
    """
    iterator = iter(items)
    ahead = deque(_RENDER_THREAD.submit(next, iterator, None) for _ in range(depth))  # None: no items left
    try:
        while (item := ahead.popleft().result()) is not None:
            ahead.append(_RENDER_THREAD.submit(next, iterator, None))
            yield item
    finally:
        for future in ahead:
            future.cancel()
        wait(ahead)


def _even(frame: np.ndarray) -> np.ndarray:
    """Drop a last odd row or column (yuv420p needs even sizes)."""
    height, width = frame.shape[:2]
    return frame[: height - height % 2, : width - width % 2]


def _yuv420p_pictures(frames: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, av.VideoFrame]]:
    """Yield each frame, cropped to even sizes, with its yuv420p picture for the encoder.

    The same array object given again is taken to be the same picture (an ended segment's last frame, as
    iter_frames yields it) and converted once.

    Raises:
        ValueError: a frame whose shape differs from the first one's.
    """
    to_yuv = VideoReformatter()
    given: Any = None
    for index, frame in enumerate(frames):
        if frame is not given:
            given = frame
            rgb = _even(np.asarray(frame, dtype=np.uint8))
            if index == 0:
                first_shape = rgb.shape
            if rgb.shape != first_shape:
                raise ValueError(f"frame {index} has shape {rgb.shape}, the first had {first_shape}")
            picture = av.VideoFrame.from_numpy_buffer(np.ascontiguousarray(rgb), format="rgb24")  # no copy
            yuv = to_yuv.reformat(picture, format="yuv420p", interpolation=TO_YUV420P, threads=1)
        yield rgb, yuv


def write_poster(frame: np.ndarray, path: Path) -> Path:
    """Save one frame as the clip's JPEG poster."""
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, frame, extension=".jpg", quality=85)
    return path


def encode_clip(frames: Iterable[np.ndarray], path: Path, fps: int = 30) -> dict[str, Any]:
    """Encode frames into an MP4/H.264 clip at `path` (moov first) and write its poster next to it.

    Args:
        frames: (H, W, 3) uint8 arrays, all the same size, possibly a lazy iterator; an odd last row or
            column is dropped. The same array object given again is taken to be the same picture (an ended
            segment's last frame) and converted once, so do not refill one buffer in place between frames.
        path: where the .mp4 goes; the poster is `path` with suffix .jpg.
        fps: frames per second of the clip.

    Returns:
        frame_count, width, height, size_bytes and poster (the poster's Path).
    """
    return _encode_pictures(_yuv420p_pictures(frames), path, fps)


def _encode_pictures(pictures: Iterable[tuple[np.ndarray, av.VideoFrame]], path: Path, fps: int) -> dict[str, Any]:
    """encode_clip's encoder: `pictures` are what _yuv420p_pictures yields."""
    iterator = iter(pictures)
    first = next(iterator, None)
    if first is None:
        raise ValueError("a clip needs at least one frame")
    height, width = first[0].shape[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}-{secrets.token_hex(4)}.mp4")  # same folder: os.replace is atomic
    count = 0
    try:
        with av.open(str(partial), "w", format="mp4", container_options={"movflags": "+faststart"}) as video:
            stream = video.add_stream("libx264", rate=fps, options=X264_OPTIONS)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            # x264 on one thread: the other core renders and converts the next frames.
            stream.codec_context.thread_count = 1
            for _, yuv in itertools.chain([first], iterator):
                yuv.pts = count  # in 1/fps units, the stream's time base
                video.mux(stream.encode(yuv))
                count += 1
            video.mux(stream.encode())  # flush the encoder; closing the container moves moov to the front
        os.replace(partial, path)  # atomic: a half-written clip is never served
    finally:
        partial.unlink(missing_ok=True)
    return {
        "frame_count": count,
        "width": width,
        "height": height,
        "size_bytes": path.stat().st_size,
        "poster": write_poster(first[0], path.with_suffix(".jpg")),
    }


def render_clip(
    env_id: str,
    seed: int,
    actions: Sequence[Any],
    path: Path,
    fps: int = 30,
    first_frame: int = 0,
    frame_count: int | None = None,
    start_state: Sequence[float] | np.ndarray | None = None,
) -> dict[str, Any]:
    """Replay a segment and encode it as a clip; the render thread draws and converts the next frames meanwhile.

    Keeps frames [first_frame, first_frame + frame_count) of `iter_frames(env_id, seed, actions, start_state)`.

    Returns:
        frame_count, width, height, size_bytes and poster (the poster's Path); see encode_clip.
    """
    stop = None if frame_count is None else first_frame + frame_count
    kept = itertools.islice(iter_frames(env_id, seed, actions, start_state), first_frame, stop)
    with closing(_prefetch(_yuv420p_pictures(kept))) as pictures:
        return _encode_pictures(pictures, path, fps)


def _state_from_obs(env_id: str, obs: np.ndarray) -> np.ndarray:
    """The classic-control env state whose observation is `obs` (the observation is the state, or its trig)."""
    if env_id in ("CartPole-v1", "CartPole-v0", "MountainCar-v0", "MountainCarContinuous-v0"):
        return np.asarray(obs, dtype=np.float64)
    if env_id == "Pendulum-v1":  # obs = (cos θ, sin θ, θ̇)
        return np.array([np.arctan2(obs[1], obs[0]), obs[2]], dtype=np.float64)
    if env_id == "Acrobot-v1":  # obs = (cos θ1, sin θ1, cos θ2, sin θ2, θ̇1, θ̇2)
        return np.array([np.arctan2(obs[1], obs[0]), np.arctan2(obs[3], obs[2]), obs[4], obs[5]], dtype=np.float64)
    raise ValueError(f"cannot restore a {env_id} state from its observation; send a render spec or frames")


DRAW_OBSERVATIONS = "draw_observations"
"""A user's env class with a method of this name, `draw_observations(obs: (L, obs_dim)) -> (L, H, W, 3) uint8`,
has clips of its segments drawn from their observations, as the classic-control envs do (examples/herding.py)."""


def can_render_from_obs(env_id: str) -> bool:
    """Whether clips of `env_id`'s segments can be drawn from their observations: a classic-control env whose
    state the observation holds, or a user's env with `draw_observations`."""
    try:
        _state_from_obs(env_id, np.zeros(6))
    except ValueError:
        entry_point = gym.spec(registered_id(env_id)).entry_point
        env_class = load_env_creator(entry_point) if isinstance(entry_point, str) else entry_point
        return callable(getattr(env_class, DRAW_OBSERVATIONS, None))
    return True


def render_observations(env_id: str, obs: np.ndarray, ended: np.ndarray) -> np.ndarray:
    """Frames of a segment drawn by setting the env's state to each observation (classic-control envs), or by
    the env's own `draw_observations`.

    Used for the worker's own rollouts, whose episodes began at vector-env resets we cannot replay. After the
    episode ended the last frame repeats, as in `iter_frames`.

    Args:
        env_id: a classic-control Gymnasium id (CartPole, MountainCar, Pendulum, Acrobot) or a user's env with
            `draw_observations`.
        obs: (L, obs_dim) observations.
        ended: (L,) bool, True in the absorbing state after the episode ended.

    Returns:
        (L, H, W, 3) uint8 frames.
    """
    env = _rgb_env(env_id)
    draw = getattr(env.unwrapped, DRAW_OBSERVATIONS, None)
    if callable(draw):
        drawn = np.asarray(draw(np.asarray(obs)), dtype=np.uint8)
        for t in range(1, len(obs)):
            if ended[t]:
                drawn[t] = drawn[t - 1]
        return drawn
    env.reset(seed=0)
    frames: list[np.ndarray] = []
    for t in range(len(obs)):
        if ended[t] and frames:
            frames.append(frames[-1])
            continue
        env.unwrapped.state = _state_from_obs(env_id, obs[t])  # type: ignore[attr-defined]
        frames.append(np.asarray(env.render()))
    return np.stack(frames)

"""MuJoCo clip benchmark: replay a 50-step segment from its physics start state, render and encode it.

    taskset -c 0 .venv/bin/python bench/mujoco_clips.py --runs 3

Per env: the segment starts after 20 steps of small random actions (small, so Hopper and Walker2d stay up and
all 50 frames are drawn); its start state is set and its actions replayed, as the worker does for a rater clip.
Rows: `render_frames` alone (step + offscreen render at worker/render.py's MUJOCO_CLIP_SIZE, without shadows
and reflections) and `render_clip` (render in the render thread while the previous frame encodes, plus the
poster), warm (the env and GL context already made), median over --runs. The GL backend is the one
worker/render.py picked (MUJOCO_GL).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this folder comes first on sys.path, where `import mujoco` would find bench/mujoco.py.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

from worker.envs import physics_state  # noqa: E402
from worker.render import GL_BACKEND, render_clip, render_frames  # noqa: E402

ENVS = ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Swimmer-v5", "Ant-v5", "Reacher-v5")


def segment(env_id: str, frames: int, seed: int) -> tuple[np.ndarray, list[list[float]]]:
    """A start state after 20 small random steps, and `frames - 1` small random actions to replay from it."""
    env = gym.make(env_id)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    shape = env.action_space.shape
    for _ in range(20):
        env.step(0.1 * rng.uniform(-1, 1, shape))
    state = physics_state(env)
    assert state is not None
    env.close()
    return state, [(0.1 * rng.uniform(-1, 1, shape)).tolist() for _ in range(frames - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=list(ENVS))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--frames", type=int, default=50)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="rlhf-mujoco-clips-"))
    print(f"{args.frames}-frame MuJoCo clips, MUJOCO_GL={GL_BACKEND} ({os.environ.get('MUJOCO_GL')}), median ms:")
    for env_id in args.envs:
        state, actions = segment(env_id, args.frames, 0)
        render_clip(env_id, 0, actions[:2], folder / "warm-up.mp4", start_state=state)  # env + GL context
        frames_only, whole, sizes = [], [], []
        for run in range(args.runs):
            state, actions = segment(env_id, args.frames, run)
            started = time.perf_counter()
            frames = render_frames(env_id, 0, actions, start_state=state)
            frames_only.append(time.perf_counter() - started)
            started = time.perf_counter()
            info = render_clip(env_id, 0, actions, folder / f"{env_id}-{run}.mp4", start_state=state)
            whole.append(time.perf_counter() - started)
            sizes.append(info["size_bytes"])
        drawn = len({id(frame) for frame in frames})
        height, width = frames[0].shape[:2]
        print(
            f"  {env_id:15s} render only {statistics.median(frames_only) * 1000:7.0f}   render_clip "
            f"{statistics.median(whole) * 1000:7.0f}   ({drawn} frames drawn, {width}x{height}, "
            f"{statistics.median(sizes) / 1024:.0f} KiB)",
            flush=True,
        )


if __name__ == "__main__":
    main()

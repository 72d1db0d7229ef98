"""Clip benchmark: render and encode a 50-frame CartPole-v1 segment, median over several runs.

    .venv/bin/python bench/clips.py --runs 10

Rows, for two kinds of segment: random actions (the issue's benchmark: the pole falls after about 20 steps,
and from there the last frame repeats, so only about 20 frames are drawn) and a pole kept upright by a simple
controller (all 50 frames drawn, as for a trained policy). For each: rendering alone (env.render, rgb_array)
and the whole job as the worker runs it for a replay (`render_clip`: the next frames render in a background
thread while the current one encodes, plus the poster). For random actions also: encoding alone
(`encode_clip` of frames already in memory, the path for uploaded frames and the worker's own rollouts) and
`render_clip` as the first clip of a fresh process (cold: gymnasium, pygame and libx264 start-up).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

from worker.render import encode_clip, render_clip, render_frames

COLD = """
import sys, tempfile, time
from pathlib import Path
import numpy as np
from worker.render import render_clip
actions = np.random.default_rng(0).integers(0, 2, size=int(sys.argv[1]) - 1).tolist()
started = time.perf_counter()
render_clip("CartPole-v1", 0, actions, Path(tempfile.mkdtemp()) / "clip.mp4")
print(time.perf_counter() - started)
"""


def upright_actions(seed: int, count: int) -> list[int]:
    """Actions of a controller that pushes toward where the pole is falling, so the episode does not end."""
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=seed)
    actions = []
    for _ in range(count):
        actions.append(int(obs[2] + 0.5 * obs[3] > 0))
        obs, _, terminated, truncated, _ = env.step(actions[-1])
        assert not (terminated or truncated)
    return actions


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description="render + encode a 50-frame CartPole clip")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--cold-runs", type=int, default=3, help="fresh processes for the cold row")
    parser.add_argument("--frames", type=int, default=50)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    folder = Path(tempfile.mkdtemp(prefix="rlhf-clips-"))
    root = Path(__file__).resolve().parents[1]
    render_clip("CartPole-v1", 0, [0] * 3, folder / "warm-up.mp4")  # first use: start-up, not per clip
    results: dict[str, list[float]] = {
        "render only": [],
        "encode only (frames in memory)": [],
        "render_clip, warm": [],
        "render_clip, cold (new process)": [],
        "upright: render only": [],
        "upright: render_clip, warm": [],
    }
    sizes, drawn = [], []
    for run in range(args.runs):
        for kind, actions in (
            ("", rng.integers(0, 2, size=args.frames - 1).tolist()),
            ("upright: ", upright_actions(run, args.frames - 1)),
        ):
            started = time.perf_counter()
            frames = render_frames("CartPole-v1", run, actions)
            results[f"{kind}render only"].append(time.perf_counter() - started)
            if not kind:
                drawn.append(len({id(frame) for frame in frames}))
                started = time.perf_counter()
                encode_clip(frames, folder / f"encode-{run}.mp4", fps=30)
                results["encode only (frames in memory)"].append(time.perf_counter() - started)
            started = time.perf_counter()
            info = render_clip("CartPole-v1", run, actions, folder / f"render-{kind[:1]}{run}.mp4", fps=30)
            results[f"{kind}render_clip, warm"].append(time.perf_counter() - started)
            sizes.append(info["size_bytes"])
    for _ in range(args.cold_runs):
        cold = subprocess.run(
            [sys.executable, "-c", COLD, str(args.frames)], cwd=root, capture_output=True, text=True, check=True
        )
        results["render_clip, cold (new process)"].append(float(cold.stdout))
    print(f"{args.frames}-frame CartPole-v1 clip, 600x400, MP4/H.264 (moov first) + JPEG poster:")
    print(f"  random actions ({statistics.median(drawn):.0f} frames drawn, median):")
    for name, samples in results.items():
        if name == "upright: render only":
            print(f"  pole kept upright ({args.frames} frames drawn):")
        label = name.removeprefix("upright: ")
        print(f"    {label:34s} {median_ms(samples):7.1f} ms   (min {min(samples) * 1000:.1f}, {len(samples)} runs)")
    print(f"  clip size: median {statistics.median(sizes) / 1024:.1f} KiB")


if __name__ == "__main__":
    main()

"""Clip benchmark: render and encode a 50-frame CartPole-v1 segment, median over several runs.

    .venv/bin/python bench/clips.py --runs 10

Rows: rendering alone (env.render, rgb_array); encoding alone (`encode_clip` of frames already in memory, the
path for uploaded frames and the worker's own rollouts); the whole job as the worker runs it for a replay
(`render_clip`: the next frames render in a background thread while the current one encodes, plus the
poster), once warm and as the first clip of a fresh process (cold: gymnasium, pygame and libx264 start-up).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from worker.render import encode_clip, render_clip, render_frames

COLD = """
import sys, tempfile, time
from pathlib import Path
from worker.render import render_clip
started = time.perf_counter()
render_clip("CartPole-v1", 0, [0, 1] * 25, Path(tempfile.mkdtemp()) / "clip.mp4", frame_count=int(sys.argv[1]))
print(time.perf_counter() - started)
"""


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
    }
    sizes = []
    for run in range(args.runs):
        actions = rng.integers(0, 2, size=args.frames - 1).tolist()
        started = time.perf_counter()
        frames = render_frames("CartPole-v1", run, actions)
        results["render only"].append(time.perf_counter() - started)
        started = time.perf_counter()
        encode_clip(frames, folder / f"encode-{run}.mp4", fps=30)
        results["encode only (frames in memory)"].append(time.perf_counter() - started)
        started = time.perf_counter()
        info = render_clip("CartPole-v1", run, actions, folder / f"render-{run}.mp4", fps=30)
        results["render_clip, warm"].append(time.perf_counter() - started)
        sizes.append(info["size_bytes"])
    for _ in range(args.cold_runs):
        cold = subprocess.run(
            [sys.executable, "-c", COLD, str(args.frames)], cwd=root, capture_output=True, text=True, check=True
        )
        results["render_clip, cold (new process)"].append(float(cold.stdout))
    print(f"{args.frames}-frame CartPole-v1 clip, 600x400, MP4/H.264 (moov first) + JPEG poster:")
    for name, samples in results.items():
        print(f"  {name:34s} {median_ms(samples):7.1f} ms   (min {min(samples) * 1000:.1f}, {len(samples)} runs)")
    print(f"  clip size: median {statistics.median(sizes) / 1024:.1f} KiB")


if __name__ == "__main__":
    main()

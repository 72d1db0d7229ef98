"""Clip benchmark: render and encode a 50-frame CartPole-v1 segment, median over several runs.

    .venv/bin/python bench/clips.py --runs 10

Reports the whole job as the worker runs it (`render_clip`: frames piped to ffmpeg while the next one
renders) with a pre-started encoder (warm) and with a fresh ffmpeg per clip (cold), plus rendering alone.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from worker.render import ClipEncoder, render_clip, render_frames


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description="render + encode a 50-frame CartPole clip")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--frames", type=int, default=50)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    folder = Path(tempfile.mkdtemp(prefix="rlhf-clips-"))
    render_frames("CartPole-v1", 0, [0] * 3)  # first use: gymnasium and pygame start-up, not per clip
    results: dict[str, list[float]] = {
        "render only": [],
        "render + encode, warm encoder": [],
        "cold": [],
        "half size (300x200), warm": [],
    }
    encoders = {
        "render + encode, warm encoder": (ClipEncoder(keep_warm=True), 1),
        "cold": (ClipEncoder(keep_warm=False), 1),
        "half size (300x200), warm": (ClipEncoder(keep_warm=True), 2),
    }
    sizes = []
    for run in range(args.runs + 1):  # run 0 warms up the encoder pool
        actions = rng.integers(0, 2, size=args.frames).tolist()
        started = time.perf_counter()
        render_frames("CartPole-v1", run, actions[: args.frames - 1])
        if run:
            results["render only"].append(time.perf_counter() - started)
        for name, (encoder, downsample) in encoders.items():
            time.sleep(0.2)  # a worker renders between other jobs; let a pre-started ffmpeg finish starting
            started = time.perf_counter()
            info = render_clip(
                "CartPole-v1", run, actions, folder / f"{name[:4]}-{run}.mp4", fps=30,
                frame_count=args.frames,
                encoder=encoder,
                downsample=downsample,
            )  # fmt: skip
            if run:
                results[name].append(time.perf_counter() - started)
                if downsample == 1:
                    sizes.append(info["size_bytes"])
    for encoder, _downsample in encoders.values():
        encoder.close()
    print(f"{args.frames}-frame CartPole-v1 clip, 600x400, MP4/H.264 (moov first), median of {args.runs} runs:")
    for name, samples in results.items():
        label = "render + encode, fresh ffmpeg" if name == "cold" else name
        print(f"  {label:32s} {median_ms(samples):7.1f} ms   (min {min(samples) * 1000:.1f})")
    print(f"  full-size clip: median {statistics.median(sizes) / 1024:.1f} KiB")


if __name__ == "__main__":
    main()

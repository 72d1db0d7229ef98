"""Clip benchmark: render and encode a 50-frame CartPole-v1 segment, median over several runs.

    .venv/bin/python bench/clips.py --runs 10

Rows, for two kinds of segment: random actions (the issue's benchmark: the pole falls after about 20 steps,
and from there the last frame repeats, so only about 20 frames are drawn) and a pole kept upright by a simple
controller (all 50 frames drawn, as for a trained policy). For each: rendering alone (env.render, rgb_array)
and the whole job as the worker runs it for a replay (`render_clip`: the next frames render in a background
thread while the current one encodes, plus the poster). For random actions also: encoding alone
(`encode_clip` of frames already in memory, the path for uploaded frames and the worker's own rollouts) and
`render_clip` as the first clip of a fresh process (cold: gymnasium, pygame and libx264 start-up).

Each row gives the median wall time and the median CPU time of the process (both threads). The machine may be
shared: the load average is printed, and under load the wall time grows while the CPU time stays about the same.
The last line is the figure issue 15 names: the upright 50-frame clip, render + encode (`render_clip`, warm).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

from worker.render import _RENDER_THREAD, encode_clip, render_clip, render_frames  # the thread: for its CPU time

COLD = """
import sys, tempfile, time
from pathlib import Path
import numpy as np
from worker.render import render_clip
actions = np.random.default_rng(0).integers(0, 2, size=int(sys.argv[1]) - 1).tolist()
started, cpu = time.perf_counter(), time.process_time()
render_clip("CartPole-v1", 0, actions, Path(tempfile.mkdtemp()) / "clip.mp4")
print(time.perf_counter() - started, time.process_time() - cpu)
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


class Timer:
    """Times what runs inside `with` and appends the seconds to `samples`' lists.

    wall: elapsed; cpu: CPU of the whole process; busier thread: the CPU of this thread or of the render thread,
    whichever is more: about the wall time on two idle cores, where the two overlap.
    """

    def __init__(self, samples: dict[str, list[float]]) -> None:
        self.samples = samples

    def _clocks(self) -> tuple[float, float, float, float]:
        render_thread = _RENDER_THREAD.submit(time.thread_time).result()
        return time.perf_counter(), time.process_time(), time.thread_time(), render_thread

    def __enter__(self) -> None:
        self.started = self._clocks()

    def __exit__(self, *_: object) -> None:
        wall, cpu, this, render = (end - start for end, start in zip(self._clocks(), self.started, strict=True))
        for name, seconds in (("wall", wall), ("cpu", cpu), ("busier thread", max(this, render))):
            self.samples[name].append(seconds)


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
    names = [
        "upright: render only",
        "upright: render_clip, warm",
        "render only",
        "encode only (frames in memory)",
        "render_clip, warm",
        "render_clip, cold (new process)",
    ]
    samples: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": [], "busier thread": []} for name in names}
    timer = {name: Timer(samples[name]) for name in names}
    loads, sizes, drawn = [os.getloadavg()[0]], [], []
    for run in range(args.runs):
        for kind, actions in (
            ("", rng.integers(0, 2, size=args.frames - 1).tolist()),
            ("upright: ", upright_actions(run, args.frames - 1)),
        ):
            with timer[f"{kind}render only"]:
                frames = render_frames("CartPole-v1", run, actions)
            if not kind:
                drawn.append(len({id(frame) for frame in frames}))
                with timer["encode only (frames in memory)"]:
                    encode_clip(frames, folder / f"encode-{run}.mp4", fps=30)
            with timer[f"{kind}render_clip, warm"]:
                info = render_clip("CartPole-v1", run, actions, folder / f"render-{kind[:1]}{run}.mp4", fps=30)
            sizes.append(info["size_bytes"])
    cold = samples["render_clip, cold (new process)"]
    for _ in range(args.cold_runs):
        output = subprocess.run(
            [sys.executable, "-c", COLD, str(args.frames)], cwd=root, capture_output=True, text=True, check=True
        ).stdout
        for name, seconds in zip(("wall", "cpu"), map(float, output.split()), strict=True):
            cold[name].append(seconds)
    loads.append(os.getloadavg()[0])
    print(f"{args.frames}-frame CartPole-v1 clip, 600x400, MP4/H.264 (moov first) + JPEG poster")
    print(f"load average {loads[0]:.1f} before, {loads[1]:.1f} after, on {os.cpu_count()} CPUs; medians:")
    for name in names:
        if name == "upright: render only":
            print(f"  pole kept upright ({args.frames} frames drawn):")
        if name == "render only":
            print(f"  random actions ({statistics.median(drawn):.0f} frames drawn):")
        wall, cpu, busier = samples[name]["wall"], samples[name]["cpu"], samples[name]["busier thread"]
        print(
            f"    {name.removeprefix('upright: '):34s} {median_ms(wall):7.1f} ms   (min {min(wall) * 1000:.1f}; "
            f"CPU {median_ms(cpu):.1f}{f', busier thread {median_ms(busier):.1f}' if busier else ''}; {len(wall)} runs)"
        )
    print(f"  clip size: median {statistics.median(sizes) / 1024:.1f} KiB")
    upright = samples["upright: render_clip, warm"]
    print(
        f"Issue 15's figure, a {args.frames}-frame upright-pole clip rendered and encoded: median "
        f"{median_ms(upright['wall']):.1f} ms at load {loads[0]:.1f} (busier thread's CPU "
        f"{median_ms(upright['busier thread']):.1f} ms: about the wall time on two idle cores)"
    )


if __name__ == "__main__":
    main()

"""Reward-model fit and PPO update throughput on each device, measured in one process (bench/gpu_check.sh).

- reward fit: `RewardEnsemble.fit` on synthetic labeled pairs of CartPole-sized segments, every epoch run
  (no early stop); pairs/s = training pairs x epochs / wall seconds.
- PPO update: `PPO.update` on one CartPole-v1 rollout collected on that device, repeated;
  samples/s = valid rollout steps x epochs run / wall seconds.

Each device gets one untimed warm-up (CUDA context, kernels, allocator) before it is timed; CUDA timings end
with a synchronize. The table gives each device's figures and their ratio to the first device listed.

Run:  .venv/bin/python bench/gpu_throughput.py                      (cuda vs cpu)
      .venv/bin/python bench/gpu_throughput.py --devices cpu --pairs 64 --epochs 2 --ppo-steps 32 --repeats 1
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from worker.config import RewardModelConfig  # noqa: E402
from worker.device import pick_device, use_one_cpu_thread  # noqa: E402
from worker.env_settings import ppo_settings_for  # noqa: E402
from worker.ppo import PPO  # noqa: E402
from worker.reward_model import RewardEnsemble  # noqa: E402
from worker.types import Choice, LabeledPair, Segment  # noqa: E402

ENV_ID = "CartPole-v1"
OBS_DIM = 4


def synthetic_pairs(count: int, length: int, rng: np.random.Generator) -> list[LabeledPair]:
    """`count` labeled pairs of random (length, 4) segments; the one with the larger sum of obs[:, 0] wins."""

    def segment() -> Segment:
        obs = rng.normal(size=(length, OBS_DIM)).astype(np.float32)
        return Segment(
            obs=obs,
            actions=rng.integers(0, 2, size=length).astype(np.int64),
            true_rewards=obs[:, 0].copy(),
            ended=np.zeros(length, dtype=bool),
            env_id=ENV_ID,
        )

    pairs = []
    for key in range(count):
        left, right = segment(), segment()
        choice: Choice = "left" if left.true_return > right.true_return else "right"
        pairs.append(LabeledPair(left, right, choice, key))
    return pairs


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reward_fit_pairs_per_second(device: torch.device, pairs: list[LabeledPair], epochs: int) -> float:
    """Train-split pairs x epochs per second of one `fit` on a fresh ensemble (after an untimed warm-up fit)."""
    # patience > max_epochs: every epoch runs, so the work is the same on every device.
    config = RewardModelConfig(max_epochs=epochs, patience=epochs + 1)
    warmup = RewardEnsemble(OBS_DIM, 2, True, replace(config, max_epochs=1), device, seed=1)
    warmup.fit(pairs[: max(8, len(pairs) // 8)])
    synchronize(device)
    model = RewardEnsemble(OBS_DIM, 2, True, config, device, seed=0)
    started = time.perf_counter()
    metrics = model.fit(pairs)
    synchronize(device)
    seconds = time.perf_counter() - started
    return metrics["reward/train_pairs"] * metrics["reward/epochs"] / seconds


def ppo_update_samples_per_second(device: torch.device, num_envs: int, num_steps: int, repeats: int) -> float:
    """Valid rollout steps x epochs per second of `PPO.update` on one collected rollout (after a warm-up)."""
    config = replace(ppo_settings_for(ENV_ID), num_envs=num_envs, num_steps=num_steps)
    ppo = PPO(ENV_ID, config, total_timesteps=100 * config.batch_size * (repeats + 1), seed=0, device=device)
    try:
        rollout = ppo.collect()
        valid = int(rollout.valid.sum())
        ppo.update(rollout)  # warm-up
        synchronize(device)
        samples = 0.0
        started = time.perf_counter()
        for _ in range(repeats):
            samples += valid * ppo.update(rollout)["ppo/epochs"]
        synchronize(device)
        seconds = time.perf_counter() - started
    finally:
        ppo.close()
    return samples / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", nargs="+", default=["cuda", "cpu"], help="devices to compare (first = 1.0x)")
    parser.add_argument("--pairs", type=int, default=2000, help="synthetic labeled pairs for the reward fit")
    parser.add_argument("--segment-length", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=10, help="reward-model epochs (all run)")
    parser.add_argument("--ppo-envs", type=int, default=16, help="PPO sub-envs in the rollout")
    parser.add_argument("--ppo-steps", type=int, default=128, help="PPO steps per sub-env in the rollout")
    parser.add_argument("--repeats", type=int, default=5, help="timed PPO updates per device")
    args = parser.parse_args()

    use_one_cpu_thread()
    devices = [pick_device(name) for name in args.devices]  # ValueError for cuda without a GPU
    pairs = synthetic_pairs(args.pairs, args.segment_length, np.random.default_rng(0))
    results: dict[str, tuple[float, float]] = {}
    for device in devices:
        fit = reward_fit_pairs_per_second(device, pairs, args.epochs)
        update = ppo_update_samples_per_second(device, args.ppo_envs, args.ppo_steps, args.repeats)
        results[str(device)] = (fit, update)
        print(f"{device}: reward fit {fit:,.0f} pairs/s, PPO update {update:,.0f} samples/s", flush=True)

    first = str(devices[0])
    base_fit, base_update = results[first]
    print()
    print(
        f"reward fit: {args.pairs} pairs x {args.segment_length} steps, {args.epochs} epochs; "
        f"PPO update: {args.ppo_envs} x {args.ppo_steps} rollout, {args.repeats} updates; torch {torch.__version__}"
    )
    print(f"| device | reward fit pairs/s | vs {first} | PPO update samples/s | vs {first} |")
    print("|---|---:|---:|---:|---:|")
    for name, (fit, update) in results.items():
        print(f"| {name} | {fit:,.0f} | {fit / base_fit:.2f}x | {update:,.0f} | {update / base_update:.2f}x |")


if __name__ == "__main__":
    main()

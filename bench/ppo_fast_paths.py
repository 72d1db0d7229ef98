"""CPU time per call of each fast path in worker/ppo_fast.py against the plain torch call it replaces.

For CartPole-v1 and Pendulum-v1 with their tuned PPO settings; A and B alternate in one process (process time,
so time lost to other processes on a shared core does not count). The last column scales the saving by the
calls one collect+update iteration makes.

Run:  OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python bench/ppo_fast_paths.py
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from worker.env_settings import ppo_settings_for  # noqa: E402
from worker.ppo import PPO  # noqa: E402
from worker.ppo_fast import adam_step, clip_grad_norm, numpy_mlp  # noqa: E402


def per_call_us(fast: Callable[[], object], plain: Callable[[], object], reps: int = 200, rounds: int = 15):
    """Median CPU microseconds per call of `fast` and of `plain`, alternating A, B, B, A, ..."""
    times: dict[str, list[float]] = {"fast": [], "plain": []}
    for r in range(rounds):
        for name in ("fast", "plain") if r % 2 == 0 else ("plain", "fast"):
            fn = fast if name == "fast" else plain
            t0 = time.process_time()
            for _ in range(reps):
                fn()
            times[name].append((time.process_time() - t0) / reps * 1e6)
    return statistics.median(times["fast"]), statistics.median(times["plain"])


def bench_env(env_id: str) -> None:
    """Print fast vs plain for each fast path on `env_id`."""
    cfg = ppo_settings_for(env_id)
    ppo = PPO(env_id, cfg, 10**6, 0, torch.device("cpu"))
    params = list(ppo.agent.parameters())
    ppo.update(ppo.collect())  # gradients and optimizer state exist
    grad_steps = cfg.update_epochs * cfg.num_minibatches
    obs = np.random.default_rng(0).normal(size=(cfg.num_envs, ppo.obs_dim)).astype(np.float32)
    actor = numpy_mlp(ppo.agent.actor)

    def torch_actor() -> None:
        with torch.no_grad():
            ppo.agent.actor(torch.from_numpy(obs)).numpy()

    cases = [
        ("actor per env step: numpy_mlp vs nn.Sequential", lambda: actor(obs), torch_actor, cfg.num_steps),
        (
            "grad clip: clip_grad_norm vs nn.utils.clip_grad_norm_",
            lambda: clip_grad_norm([p.grad for p in params], cfg.max_grad_norm),
            lambda: nn.utils.clip_grad_norm_(params, cfg.max_grad_norm),
            grad_steps,
        ),
        (
            "Adam: adam_step vs optimizer.step()",
            lambda: adam_step(ppo.optimizer, params),
            ppo.optimizer.step,
            grad_steps,
        ),
    ]
    print(f"{env_id}: {grad_steps} gradient steps and {cfg.num_steps} actor calls per iteration")
    for name, fast, plain, calls in cases:
        f, p = per_call_us(fast, plain)
        print(f"  {name:55s} {f:6.1f} us vs {p:6.1f} us  ({p / f:.1f}x; {(p - f) * calls / 1e3:.2f} ms/iteration)")
    ppo.close()


def main() -> None:
    torch.set_num_threads(1)
    for env_id in ("CartPole-v1", "Pendulum-v1"):
        bench_env(env_id)


if __name__ == "__main__":
    main()

"""Our PPO (worker/ppo.py) against stable-baselines3's PPO on the TRUE CartPole-v1 reward.

Same env, same env-step budget, same process, one thread each (OMP_NUM_THREADS=1, torch.set_num_threads(1)),
seeds 0, 1, 2 by default. Every agent is evaluated the same way: every `--eval-every` env steps (at the first
rollout boundary past it), 20 deterministic episodes on a fresh vector env seeded 10_000 (one episode per
sub-env); evaluation time is excluded from the training wall clock.

Agents:
    sb3       stable-baselines3 PPO with rl-zoo3's CartPole-v1 hyperparameters (n_envs 8, n_steps 32,
              batch_size 256, gae_lambda 0.8, gamma 0.98, n_epochs 20, ent_coef 0, lin_1e-3, lin_0.2).
    ours-zoo  worker.ppo with the same hyperparameters (same work per env step: a like-for-like speed check).
    ours      worker.ppo with ppo_settings_for("CartPole-v1") (our tuned defaults).

Run:  .venv/bin/python bench/ppo_throughput.py [--steps 50000] [--seeds 0 1 2] [--agents sb3 ours-zoo ours]
Needs the `bench` extra (stable-baselines3).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from rl_zoo import CARTPOLE_N_ENVS, CARTPOLE_PPO, sb3_cartpole_kwargs  # noqa: E402

from worker.config import PPOConfig  # noqa: E402
from worker.env_settings import ppo_settings_for  # noqa: E402
from worker.envs import make_vec_env  # noqa: E402
from worker.ppo import PPO  # noqa: E402

ENV_ID = "CartPole-v1"
EVAL_SEED = 10_000

# rl-zoo3's CartPole-v1 settings in our config's terms (8 x 32 = 256 steps, 1 minibatch of 256).
ZOO_CONFIG = PPOConfig(
    num_envs=CARTPOLE_N_ENVS,
    num_steps=int(CARTPOLE_PPO["n_steps"]),
    gamma=CARTPOLE_PPO["gamma"],
    gae_lambda=CARTPOLE_PPO["gae_lambda"],
    update_epochs=int(CARTPOLE_PPO["n_epochs"]),
    num_minibatches=int(CARTPOLE_N_ENVS * CARTPOLE_PPO["n_steps"] // CARTPOLE_PPO["batch_size"]),
    learning_rate=CARTPOLE_PPO["learning_rate"],
    anneal_lr=True,
    clip_coef=CARTPOLE_PPO["clip_range"],
    anneal_clip=True,
    ent_coef=CARTPOLE_PPO["ent_coef"],
    vf_coef=0.5,
    max_grad_norm=0.5,
)


@dataclass
class RunResult:
    """One (agent, seed) run: evaluations as (env steps, training wall s, mean return)."""

    agent: str
    seed: int
    steps: int = 0
    train_wall_s: float = 0.0
    evals: list[tuple[int, float, float]] = field(default_factory=list)

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.train_wall_s

    def first_reaching(self, threshold: float) -> tuple[int, float] | None:
        return next(((s, w) for s, w, r in self.evals if r >= threshold), None)

    @property
    def final_return(self) -> float:
        return self.evals[-1][2]


def evaluate(act: Callable[[np.ndarray], np.ndarray], episodes: int) -> float:
    """Mean true return of `episodes` deterministic episodes, one per sub-env, start states seeded EVAL_SEED.

    Args:
        act: (episodes, obs_dim) float32 observations -> (episodes,) actions.
        episodes: number of episodes.
    """
    env = make_vec_env(ENV_ID, episodes, EVAL_SEED)
    obs, _ = env.reset(seed=EVAL_SEED)
    returns = np.zeros(episodes)
    finished = np.zeros(episodes, dtype=bool)
    while not finished.all():
        obs, reward, terminated, truncated, _ = env.step(act(np.asarray(obs, dtype=np.float32)))
        returns += np.where(finished, 0.0, reward)
        finished |= terminated | truncated
    env.close()
    return float(returns.mean())


def run_ours(agent: str, config: PPOConfig, steps: int, seed: int, eval_every: int, episodes: int) -> RunResult:
    """Train worker.ppo for `steps` env steps, evaluating every `eval_every` steps."""
    result = RunResult(agent, seed)
    ppo = PPO(ENV_ID, config, steps, seed, torch.device("cpu"))
    next_eval = eval_every
    while ppo.timesteps < steps:
        t0 = time.perf_counter()
        ppo.update(ppo.collect())
        result.train_wall_s += time.perf_counter() - t0
        if ppo.timesteps >= next_eval or ppo.timesteps >= steps:
            result.evals.append(
                (ppo.timesteps, result.train_wall_s, evaluate(lambda o: ppo.act(o, True), episodes))
            )
            while next_eval <= ppo.timesteps:
                next_eval += eval_every
    result.steps = ppo.timesteps
    ppo.close()
    return result


def run_sb3(steps: int, seed: int, eval_every: int, episodes: int) -> RunResult:
    """Train stable-baselines3 PPO with rl-zoo3's CartPole-v1 hyperparameters, evaluating like run_ours."""
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env

    result = RunResult("sb3", seed)

    def linear(start: float) -> Callable[[float], float]:
        return lambda progress_remaining: progress_remaining * start

    class EvalCallback(BaseCallback):
        """Evaluates after each update (at the next rollout's start) and keeps eval time out of the clock."""

        def __init__(self) -> None:
            super().__init__()
            self.next_eval = eval_every
            self.eval_wall = 0.0

        def _on_rollout_start(self) -> None:
            if self.num_timesteps >= self.next_eval:
                self._evaluate()

        def _evaluate(self) -> None:
            t0 = time.perf_counter()
            mean = evaluate(lambda o: self.model.predict(o, deterministic=True)[0], episodes)
            self.eval_wall += time.perf_counter() - t0
            result.evals.append((self.num_timesteps, time.perf_counter() - start - self.eval_wall, mean))
            while self.next_eval <= self.num_timesteps:
                self.next_eval += eval_every

        def _on_step(self) -> bool:
            return True

    env = sb3_make_vec_env(ENV_ID, n_envs=CARTPOLE_N_ENVS, seed=seed)
    model = SB3PPO(
        "MlpPolicy",
        env,
        **sb3_cartpole_kwargs(linear),
        seed=seed,
        device="cpu",
        verbose=0,
    )
    callback = EvalCallback()
    start = time.perf_counter()
    model.learn(steps, callback=callback)
    end = time.perf_counter()
    result.steps = int(model.num_timesteps)
    result.train_wall_s = end - start - callback.eval_wall
    if not result.evals or result.evals[-1][0] < result.steps:
        callback.num_timesteps = result.steps
        callback._evaluate()
    env.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50_000, help="env steps per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--agents", nargs="+", default=["sb3", "ours-zoo", "ours"])
    parser.add_argument("--eval-every", type=int, default=2048)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--threshold", type=float, default=475.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        f"{ENV_ID}, true reward, {args.steps} env steps per run, seeds {args.seeds}; "
        f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, torch.set_num_threads(1) for every agent; "
        f"eval: {args.episodes} deterministic episodes every {args.eval_every} steps, excluded from wall"
    )

    results: list[RunResult] = []
    for seed in args.seeds:
        for agent in args.agents:  # interleaved, so machine load drifts hit every agent alike
            if agent == "sb3":
                r = run_sb3(args.steps, seed, args.eval_every, args.episodes)
            elif agent == "ours-zoo":
                r = run_ours(agent, ZOO_CONFIG, args.steps, seed, args.eval_every, args.episodes)
            elif agent == "ours":
                config = ppo_settings_for(ENV_ID)
                r = run_ours(agent, config, args.steps, seed, args.eval_every, args.episodes)
            else:
                raise SystemExit(f"unknown agent {agent!r}")
            results.append(r)
            hit = r.first_reaching(args.threshold)
            print(
                f"  {agent:9s} seed {seed}: {r.steps_per_s:7.0f} steps/s, "
                f"to {args.threshold:g}: {f'{hit[0]} steps, {hit[1]:.2f} s' if hit else 'not reached'}, "
                f"final {r.final_return:.1f}",
                flush=True,
            )

    print()
    header = (
        f"| agent | seed | env steps/s | ratio vs sb3 | steps to {args.threshold:g} | "
        f"train wall s to {args.threshold:g} | final return |"
    )
    print(header)
    print("|---|---|---|---|---|---|---|")
    sb3_rate = {r.seed: r.steps_per_s for r in results if r.agent == "sb3"}
    for r in sorted(results, key=lambda r: (args.agents.index(r.agent), r.seed)):
        hit = r.first_reaching(args.threshold)
        ratio = f"{r.steps_per_s / sb3_rate[r.seed]:.2f}" if r.seed in sb3_rate else "-"
        print(
            f"| {r.agent} | {r.seed} | {r.steps_per_s:.0f} | {ratio} | {hit[0] if hit else '-'} | "
            f"{f'{hit[1]:.2f}' if hit else '-'} | {r.final_return:.1f} |"
        )
    print()
    for agent in args.agents:
        rs = [r for r in results if r.agent == agent]
        hits = [r.first_reaching(args.threshold) for r in rs]
        reached = [h for h in hits if h is not None]
        line = (
            f"{agent:9s}: median {statistics.median(r.steps_per_s for r in rs):.0f} steps/s, "
            f"reached {len(reached)}/{len(rs)}"
        )
        if reached:
            line += (
                f", median to threshold {statistics.median(h[0] for h in reached):.0f} steps / "
                f"{statistics.median(h[1] for h in reached):.2f} s"
            )
        if sb3_rate and agent != "sb3":
            ratios = [r.steps_per_s / sb3_rate[r.seed] for r in rs if r.seed in sb3_rate]
            line += f", throughput ratio vs sb3 (median) {statistics.median(ratios):.2f}"
        print(line)


if __name__ == "__main__":
    main()

"""What the long benchmarks share: runs side by side, one per process, and a results file of JSON lines that a
later invocation resumes from, so a table can be finished in several sittings or on a bigger machine; the hash
of a run's settings that tells a rerun is due, and a random policy's return to measure improvement from."""

from __future__ import annotations

import hashlib
import json
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # no torch or gymnasium at import: `--table` invocations need neither
    from worker.config import RunConfig

Job = TypeVar("Job")


def run_all(
    run_job: Callable[[Job], dict | None], jobs: list[Job], processes: int
) -> Iterator[tuple[Job, dict | None]]:
    """Each job with its row (None if it failed; the traceback goes to stderr), in the order they finish.
    `run_job` must be a module-level function, so that a worker process can import it."""
    if processes == 1:
        for job in jobs:
            try:
                yield job, run_job(job)
            except Exception:
                traceback.print_exc()
                yield job, None
        return
    # spawn: each worker imports torch (and MuJoCo) afresh instead of inheriting a forked copy of this process's.
    with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(run_job, job): job for job in jobs}
        for future in as_completed(futures):
            try:
                yield futures[future], future.result()
            except Exception:
                traceback.print_exc()
                yield futures[future], None


def load_rows(path: Path, row_key: Callable[[dict], tuple]) -> dict[tuple, dict]:
    """The rows already in the results file, by key (a later line wins); a torn last line is ignored."""
    rows: dict[tuple, dict] = {}
    if not path.exists():
        return rows
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        rows[row_key(row)] = row
    return rows


def append_row(path: Path, row: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        out.write(json.dumps(row) + "\n")


def fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


# What a true-reward run never reads (worker/loop.py: Learner.step skips labels, pool, model and snapshots; PPO seeds
# its own generator), so a change to any of them leaves its rows standing.
PREFERENCE_ONLY = (
    "labels",
    "teacher",
    "teacher_params",
    "query",
    "segment_length",
    "exploration_steps",
    "explore_until_trusted",
    "initial_label_fraction",
    "label_schedule_end",
    "segments_per_rollout",
    "pool_rollouts",
    "policy_snapshots",
    "reward_model",
)


def config_hash(config: RunConfig) -> str:
    """A short hash of everything in the resolved config but the seed: a change of settings is a new run. A
    true-reward run's hash leaves out the `PREFERENCE_ONLY` settings, defaults included, so a setting added to
    the reward model does not rerun it."""
    from dataclasses import replace

    data = replace(config, seed=0).to_dict()
    if config.true_reward:
        for name in PREFERENCE_ONLY:
            data.pop(name)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def run_row(config: RunConfig, **fields: object) -> dict:
    """Run our loop on `config` in this process: the results file's row, `fields` (env, variant, seed) first, then
    the settings that decide the row's key and what the run reached, with its evaluation curve."""
    from worker.loop import run  # here, so a --table invocation needs neither torch nor MuJoCo

    metrics = run(config).metrics
    return {
        **fields,
        "teacher": config.teacher,
        "labels": config.labels,
        "timesteps": config.timesteps,
        "config_hash": config_hash(config),
        "return": metrics["final_true_return"],
        "return_std": metrics["final_true_return_std"],
        "eval_episodes": config.eval_episodes,
        "labels_used": metrics["labels_used"],
        "choices": None if config.true_reward else metrics["choices"],
        "reward_correlation": metrics["reward_correlation"],
        "wall_seconds": metrics["wall_seconds"],
        "env_steps": metrics["timesteps"],
        "curve": [[p["env/timesteps"], p["env/true_return"]] for p in metrics["curve"]],
    }


def random_policy_return(env_id: str, episodes: int, seed: int = 0) -> float:
    """Mean true return of uniformly random actions over `episodes` episodes (any id `rlhf run --env` takes)."""
    import gymnasium as gym
    import numpy as np

    from worker.envs import registered_id

    env = gym.make(registered_id(env_id))
    env.action_space.seed(seed)
    returns = []
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))


def save_figure(fig: Any, path: Path, dpi: int = 90) -> None:
    """Lay out, write beside the results file and free a matplotlib figure."""
    import matplotlib.pyplot as plt  # here, so that running the benchmarks needs no matplotlib until a plot

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)

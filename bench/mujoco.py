"""The paper's own tasks: MuJoCo locomotion from preferences, against PPO on the true reward.

For each env (HalfCheetah-v5, Hopper-v5, Walker2d-v5, Swimmer-v5, Ant-v5; Reacher-v5 on request) and seed, four
variants on the same PPO settings (worker/env_settings.py), which differ only in the reward PPO sees:
  - true       PPO on the env's own reward: the baseline every ratio is taken against
  - pref-700   700 labels from the perfect teacher
  - pref-1400  1,400 labels from the perfect teacher
  - mistake-700  700 labels from B-Pref's mistake teacher (each answer flipped with probability 0.1)

Christiano et al. (2017) report 700 labels coming close to the true-reward agent and 1,400 matching it. The table
gives each variant's final true return (mean over seeds of the mean of --eval-episodes deterministic episodes)
and its ratio to true-reward PPO's at the same env steps, and the true-reward run's ratio to rl-zoo3's published
PPO return at 1M steps (its benchmark.md; the v3 envs, one run each). The plot has one axes per env: true return
against env steps, every variant on it, one line per seed.

Every run is one process with one torch thread; --jobs N runs N side by side (one per idle core). Each finished
run is appended as a JSON line to the results file (with its evaluation curve) and a later invocation skips the
runs found there (same env, variant, seed, labels, timesteps and a hash of the resolved run config, so a change
of settings runs them again), so the table can be finished in several sittings or on a bigger machine.

    python bench/mujoco.py                                            # everything: many hours on one core
    python bench/mujoco.py --jobs 16 --seeds 0 1 2                    # the full table on a 16-core machine
    taskset -c 1 python bench/mujoco.py --envs HalfCheetah-v5 Hopper-v5 --variants true --seeds 0
    python bench/mujoco.py --table                                    # print the table and plot, run nothing
    python bench/mujoco.py --envs Hopper-v5 --timesteps 4096 --labels-scale 0.02 --out /tmp/m.jsonl  # smoke
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
BENCH = Path(__file__).resolve().parent
# Run as a script, this file's folder comes first on sys.path, where `import mujoco` would find this file: it goes
# last instead, behind the installed mujoco package, and its other modules stay importable.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH] + [str(BENCH)]

from run_table import append_row, config_hash, fmt, load_rows, run_all, run_row, save_figure  # noqa: E402

from worker.config import RunConfig  # noqa: E402

RESULTS = BENCH / "results"
ENVS = ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Swimmer-v5", "Ant-v5")
# rl-zoo3 benchmark.md, PPO with its hyperparams/ppo.yml settings, 1M steps, v3 envs (one trained agent each).
REFERENCE = {
    "HalfCheetah-v5": 5819.1,
    "Hopper-v5": 2410.4,
    "Walker2d-v5": 3478.8,
    "Swimmer-v5": 281.6,
    "Ant-v5": 1327.2,
}


@dataclass(frozen=True)
class Variant:
    """What one column of the table trains PPO on."""

    name: str
    labels: int = 0
    teacher: str = "perfect"
    true_reward: bool = False


VARIANTS = {
    v.name: v
    for v in (
        Variant("true", true_reward=True),
        Variant("pref-700", 700),
        Variant("pref-1400", 1400),
        Variant("mistake-700", 700, teacher="mistake"),
    )
}


@dataclass(frozen=True)
class Job:
    """One run: a variant on one env and seed."""

    env_id: str
    variant: str
    seed: int
    labels: int
    timesteps: int
    """Env steps asked for (0: the env's default, 1M for these)."""
    eval_every: int
    eval_episodes: int

    def config(self) -> RunConfig:
        spec = VARIANTS[self.variant]
        return RunConfig(
            env_id=self.env_id,
            labels=self.labels,
            seed=self.seed,
            teacher=spec.teacher,
            true_reward=spec.true_reward,
            timesteps=self.timesteps,
            eval_every=self.eval_every,
            eval_episodes=self.eval_episodes,
            device="cpu",
        ).resolved()

    @property
    def key(self) -> tuple:
        return (self.env_id, self.variant, self.seed, self.labels, self.config().timesteps, config_hash(self.config()))


def row_key(row: dict) -> tuple:
    return (row["env"], row["variant"], row["seed"], row["labels"], row["timesteps"], row["config_hash"])


# ---- the runs ---------------------------------------------------------------------------------------------
def run_job(job: Job) -> dict:
    """One run of our loop in this process: its row for the results file."""
    return run_row(job.config(), env=job.env_id, variant=job.variant, seed=job.seed)


# ---- the table and the plot -------------------------------------------------------------------------------


def latest_rows(rows: dict[tuple, dict]) -> dict[tuple[str, str], list[dict]]:
    """(env, variant) → its rows of the most common step budget, one per seed (the last written wins)."""
    by_cell: dict[tuple[str, str], dict[int, dict]] = {}
    for row in rows.values():
        by_cell.setdefault((row["env"], row["variant"]), {})[row["seed"]] = row
    return {cell: sorted(seeds.values(), key=lambda r: r["seed"]) for cell, seeds in by_cell.items()}


def table(rows: dict[tuple, dict]) -> str:
    """A markdown table: per env and variant, seeds, per-seed and mean final true return, ratio to true PPO."""
    cells = latest_rows(rows)
    lines = [
        "| env | variant | env steps | seeds | final true return per seed | mean | ratio to true-reward PPO |",
        "|---|---|---|---|---|---|---|",
    ]
    envs = [e for e in ENVS + ("Reacher-v5",) if any(c[0] == e for c in cells)]
    for env in envs:
        true_rows = cells.get((env, "true"), [])
        true_mean = statistics.fmean(r["return"] for r in true_rows) if true_rows else None
        for name in VARIANTS:
            chosen = cells.get((env, name))
            if not chosen:
                continue
            mean = statistics.fmean(r["return"] for r in chosen)
            steps = sorted({r["env_steps"] for r in chosen})
            if name == "true":
                reference = REFERENCE.get(env)
                ratio = f"{mean / reference:.2f} of rl-zoo3's {reference:.0f}" if reference else "—"
            else:
                # The ratio to true-reward PPO on the same seeds only, at the same env steps.
                same = [t for t in true_rows if t["seed"] in {r["seed"] for r in chosen}]
                same_mean = statistics.fmean(t["return"] for t in same) if same else None
                ratio = fmt(mean / same_mean if same_mean else None, ".2f")
            per_seed = " / ".join(fmt(r["return"], ".0f") for r in chosen)
            seeds = ",".join(str(r["seed"]) for r in chosen)
            lines.append(
                f"| {env} | {name} | {'/'.join(str(s) for s in steps)} | {seeds} | {per_seed} "
                f"| {fmt(mean, '.0f')} | {ratio} |"
            )
        if true_mean is None:
            lines.append(f"| {env} | true | — | — | not run yet | — | — |")
    return "\n".join(lines)


def plot(rows: dict[tuple, dict], path: Path) -> None:
    """One axes per env: true return against env steps, each variant in its colour, one line per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = latest_rows(rows)
    envs = [e for e in ENVS + ("Reacher-v5",) if any(c[0] == e for c in cells)]
    if not envs:
        return
    colours = dict(zip(VARIANTS, ("black", "tab:blue", "tab:green", "tab:red"), strict=True))
    fig, axes = plt.subplots(1, len(envs), figsize=(5 * len(envs), 4), squeeze=False)
    for ax, env in zip(axes[0], envs, strict=True):
        for name in VARIANTS:
            for i, row in enumerate(cells.get((env, name), [])):
                steps, returns = zip(*row["curve"], strict=True) if row["curve"] else ((), ())
                ax.plot(steps, returns, color=colours[name], alpha=0.8, label=name if i == 0 else None)
        if env in REFERENCE:
            ax.axhline(REFERENCE[env], color="grey", linestyle=":", label="rl-zoo3 PPO, 1M")
        ax.set_title(env)
        ax.set_xlabel("env steps")
        ax.set_ylabel("true return (deterministic policy)")
        ax.legend(fontsize="small")
    save_figure(fig, path, dpi=100)


# ---- the plan ---------------------------------------------------------------------------------------------
def plan(args: argparse.Namespace) -> list[Job]:
    """Jobs in priority order: seed by seed, variant by variant (true first), env by env."""
    jobs = []
    for seed in args.seeds:
        for name in args.variants:
            spec = VARIANTS[name]
            labels = max(1, round(spec.labels * args.labels_scale)) if not spec.true_reward else 0
            for env in args.envs:
                jobs.append(Job(env, name, seed, labels, args.timesteps, args.eval_every, args.eval_episodes))
    return jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=list(ENVS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--timesteps", type=int, default=0, help="env steps per run; 0: the env's default (1M)")
    parser.add_argument("--labels-scale", type=float, default=1.0, help="multiply every label budget (smoke runs)")
    parser.add_argument("--eval-every", type=int, default=50_000, help="env steps between evaluations")
    parser.add_argument("--eval-episodes", type=int, default=10, help="episodes per evaluation (≥ 10 for the table)")
    parser.add_argument("--jobs", type=int, default=1, help="runs side by side, one per idle core")
    parser.add_argument("--out", type=Path, default=RESULTS / "mujoco.jsonl", help="results file (JSON lines)")
    parser.add_argument("--plot", type=Path, default=None, help="plot file (default: the results file's .png)")
    parser.add_argument("--table", action="store_true", help="print the table and plot from the results file only")
    parser.add_argument("--fresh", action="store_true", help="ignore the runs already in the results file")
    args = parser.parse_args()
    plot_path = args.plot or args.out.with_suffix(".png")

    rows = {} if args.fresh else load_rows(args.out, row_key)
    if not args.table:
        jobs = [job for job in plan(args) if job.key not in rows]
        print(f"{len(jobs)} runs to go ({len(rows)} in {args.out})", flush=True)
        for job, row in run_all(run_job, jobs, args.jobs):
            if row is None:
                print(f"FAILED {job}", file=sys.stderr, flush=True)
                continue
            append_row(args.out, row)
            rows[row_key(row)] = row
            print(
                f"{row['env']:<15} {row['variant']:<12} seed {row['seed']}  return {row['return']:8.1f} "
                f"± {row['return_std']:.1f}  labels {row['labels_used']:5d}  {row['env_steps']} steps "
                f"{row['wall_seconds']:6.0f} s",
                flush=True,
            )
            plot(rows, plot_path)
    print(table(rows))
    plot(rows, plot_path)
    print(f"plot: {plot_path}")


if __name__ == "__main__":
    main()

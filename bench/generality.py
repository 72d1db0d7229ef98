"""Envs nobody tuned: true-reward PPO against preference learning, both on the defaults for an env without an
entry in worker/env_settings.py (`default_settings`), at the same env steps, 3 seeds each.

The envs (none has an entry) and the label budget of each:
  MountainCarContinuous-v0    200 labels   rl-zoo3's PPO: 88.3 at 20k steps
  LunarLander-v3            1,000 labels   rl-zoo3's PPO: 242.1 at 1M steps (LunarLander-v2)
  InvertedDoublePendulum-v5   700 labels   (the `mujoco` extra; rl-zoo3 publishes no PPO return for it)
  examples.orbit:Orbit      1,400 labels   our own task (examples/orbit.py)

Per env and seed: the final true return of true-reward PPO, of preference learning (the perfect teacher) and of
the control (the same loop with the random teacher: what exploration and chance reach without a signal in the
labels), the share of true-reward PPO's improvement over a random policy that preference learning and the
control reached on that seed ((pref - random) / (true - random)), the "equal" answers, and the wall times.
Targets, per env on every seed: that share ≥ 0.8, and true-reward PPO at rl-zoo3's step count (its curve's
evaluation nearest to it, one falls there; the final one when the run is shorter) at least rl-zoo3's return,
where rl-zoo3 publishes one. The plot beside the results file has one axes per env: every seed's true return
against env steps, every variant, the random policy and rl-zoo3's return.

Every run is one process with one torch thread (OMP_NUM_THREADS=1); --jobs N runs N side by side. Finished runs
are appended to the results file and reused by a later invocation (same env, variant, seed, labels, env steps
and resolved settings), so the table can be finished in several sittings.

    python bench/generality.py --jobs 2                          # everything: about an hour on 2 cores
    python bench/generality.py --envs LunarLander-v3 --seeds 0    # one env, one seed
    python bench/generality.py --variants pref --seeds 3 4        # preference learning only, more seeds
    python bench/generality.py --table                           # the table and plot from the results file
    python bench/generality.py --timesteps 4096 --labels-scale 0.02 --seeds 0 --out /tmp/g.jsonl  # smoke
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
RESULTS = BENCH / "results"
# Run as a script, this folder comes first on sys.path, where `import mujoco` (for InvertedDoublePendulum) would
# find bench/mujoco.py: it goes last instead, behind the installed mujoco package, and run_table stays importable.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH] + [str(BENCH)]

from run_table import (  # noqa: E402
    append_row,
    config_hash,
    fmt,
    load_rows,
    random_policy_return,
    run_all,
    run_row,
    save_figure,
)

from worker.config import RunConfig  # noqa: E402

SHARE_TARGET = 0.8
"""Preference learning's share of true-reward PPO's improvement over a random policy, on every seed."""
RANDOM_EPISODES = 100


@dataclass(frozen=True)
class Env:
    """One env of the suite: its label budget and rl-zoo3's published PPO return, if any."""

    env_id: str
    labels: int
    reference: float | None = None
    """rl-zoo3's benchmark.md, PPO on its tuned settings (one trained agent)."""
    reference_steps: int | None = None


ENVS = {
    env.env_id: env
    for env in (
        Env("MountainCarContinuous-v0", 200, 88.343, 20_000),
        Env("LunarLander-v3", 1000, 242.119, 1_000_000),
        Env("InvertedDoublePendulum-v5", 700),
        Env("examples.orbit:Orbit", 1400),
    )
}
VARIANTS = ("true", "pref", "control")
"""true-reward PPO; preference learning (the perfect teacher); the control: the same loop with the random teacher,
whose labels carry no signal, so what it reaches is the exploration's and chance's doing, not the labels'."""


@dataclass(frozen=True)
class Job:
    """One run: a variant on one env and seed."""

    env_id: str
    variant: str
    seed: int
    labels: int
    timesteps: int
    """Env steps asked for (0: the defaults' budget)."""
    evaluations: int
    eval_episodes: int

    def config(self) -> RunConfig:
        config = RunConfig(
            env_id=self.env_id,
            labels=self.labels,
            seed=self.seed,
            true_reward=self.variant == "true",
            teacher="random" if self.variant == "control" else "perfect",
            timesteps=self.timesteps,
            eval_episodes=self.eval_episodes,
            device="cpu",
        ).resolved()
        every = max(1, config.timesteps // self.evaluations)
        reference_steps = ENVS[self.env_id].reference_steps
        if reference_steps is not None and reference_steps < config.timesteps:
            every = min(every, reference_steps)  # an evaluation falls on rl-zoo3's step count
        return RunConfig.from_dict({**config.to_dict(), "eval_every": every})

    @property
    def key(self) -> tuple:
        config = self.config()
        return (self.env_id, self.variant, self.seed, self.labels, config.timesteps, config_hash(config))


def row_key(row: dict) -> tuple:
    return (row["env"], row["variant"], row["seed"], row["labels"], row["timesteps"], row["config_hash"])


def run_job(job: Job) -> dict:
    """One run of our loop in this process: its row for the results file."""
    return run_row(job.config(), env=job.env_id, variant=job.variant, seed=job.seed)


# ---- the table and the plot -------------------------------------------------------------------------------
def by_cell(rows: dict[tuple, dict], jobs: list[Job]) -> dict[tuple[str, str], dict[int, dict]]:
    """(env, variant) → seed → the row of that planned job."""
    cells: dict[tuple[str, str], dict[int, dict]] = {}
    for job in jobs:
        if job.key in rows:
            cells.setdefault((job.env_id, job.variant), {})[job.seed] = rows[job.key]
    return cells


def at_steps(row: dict, steps: int) -> float:
    """The true return on the row's curve at `steps`: the evaluation nearest to it (they fall on rollout
    boundaries), or the final one when the run is shorter."""
    if steps >= row["env_steps"] or not row["curve"]:
        return row["return"]
    return min(row["curve"], key=lambda point: abs(point[0] - steps))[1]


def share(row: dict | None, true: dict | None, random: float | None) -> float | None:
    """The row's part of true-reward PPO's improvement over the random policy (None when there is none to share)."""
    if row and true and random is not None and true["return"] > random:
        return (row["return"] - random) / (true["return"] - random)
    return None


def table(rows: dict[tuple, dict], jobs: list[Job], randoms: dict[str, float]) -> str:
    """A markdown table, one line per env and seed, and a summary line per env with its targets."""
    cells = by_cell(rows, jobs)
    lines = [
        "| env | seed | steps | labels | random | true-reward PPO | preference | share | control | control share | "
        "equal | wall s true/pref |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    summaries = []
    for env_id, env in ENVS.items():
        true_rows, pref_rows = cells.get((env_id, "true"), {}), cells.get((env_id, "pref"), {})
        control_rows = cells.get((env_id, "control"), {})
        seeds = sorted(set(true_rows) | set(pref_rows))
        if not seeds:
            continue
        random = randoms.get(env_id)
        shares, control_shares = {}, {}
        for seed in seeds:
            true, pref, control = true_rows.get(seed), pref_rows.get(seed), control_rows.get(seed)
            if (value := share(pref, true, random)) is not None:
                shares[seed] = value
            if (value := share(control, true, random)) is not None:
                control_shares[seed] = value
            steps = (true or pref or {}).get("env_steps")
            equal = pref["choices"]["equal"] if pref else None
            walls = f"{fmt(true and true['wall_seconds'], '.0f')} / {fmt(pref and pref['wall_seconds'], '.0f')}"
            lines.append(
                f"| {env_id} | {seed} | {steps} | {pref['labels_used'] if pref else '—'} | {fmt(random, '.1f')} | "
                f"{fmt(true and true['return'], '.1f')} | {fmt(pref and pref['return'], '.1f')} | "
                f"{fmt(shares.get(seed), '.2f')} | {fmt(control and control['return'], '.1f')} | "
                f"{fmt(control_shares.get(seed), '.2f')} | {fmt(equal, 'd')} | {walls} |"
            )
        held = sum(share >= SHARE_TARGET for share in shares.values())
        summary = f"{env_id}: preference ≥ {SHARE_TARGET:.0%} of true-reward PPO's improvement on {held}/{len(seeds)}"
        if shares:
            summary += f" (median share {statistics.median(shares.values()):.2f})"
        if control_shares:
            summary += f"; the random-teacher control's median share {statistics.median(control_shares.values()):.2f}"
        if env.reference is not None and env.reference_steps is not None:
            at_reference = [at_steps(row, env.reference_steps) for row in true_rows.values()]
            beat = sum(value >= env.reference for value in at_reference)
            summary += (
                f"; true-reward PPO ≥ rl-zoo3's {env.reference:.1f} at {env.reference_steps:,} steps on "
                f"{beat}/{len(true_rows)} seeds ({' / '.join(fmt(v, '.1f') for v in at_reference)})"
            )
        else:
            summary += "; rl-zoo3 publishes no PPO return for it"
        summaries.append(summary)
    return "\n".join(lines + [""] + summaries)


def plot(rows: dict[tuple, dict], jobs: list[Job], randoms: dict[str, float], path: Path) -> None:
    """One axes per env: each seed's true return against env steps, both variants, random and rl-zoo3 lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = by_cell(rows, jobs)
    envs = [e for e in ENVS if any((e, v) in cells for v in VARIANTS)]
    if not envs:
        return
    fig, axes = plt.subplots(1, len(envs), figsize=(4.5 * len(envs), 3.8), squeeze=False)
    colours = {"true": "black", "pref": "tab:blue", "control": "tab:orange"}
    names = {"true": "true-reward PPO", "pref": "preference learning", "control": "control (random teacher)"}
    for ax, env_id in zip(axes[0], envs, strict=True):
        for variant in VARIANTS:
            for i, row in enumerate(cells.get((env_id, variant), {}).values()):
                steps, returns = zip(*row["curve"], strict=True) if row["curve"] else ((), ())
                ax.plot(steps, returns, color=colours[variant], alpha=0.7, label=names[variant] if i == 0 else None)
        if env_id in randoms:
            ax.axhline(randoms[env_id], color="grey", linestyle="--", linewidth=1, label="random policy")
        reference = ENVS[env_id].reference
        if reference is not None:
            steps = ENVS[env_id].reference_steps
            ax.axhline(reference, color="tab:green", linestyle=":", label=f"rl-zoo3 PPO ({steps:,} steps)")
        ax.set(title=f"{env_id} ({ENVS[env_id].labels} labels)", xlabel="env steps", ylabel="true return")
        ax.xaxis.set_major_formatter(lambda value, _: f"{value / 1000:g}k")
        ax.legend(fontsize="x-small")
        ax.grid(alpha=0.3)
    save_figure(fig, path)


# ---- the plan ---------------------------------------------------------------------------------------------
def plan(args: argparse.Namespace) -> list[Job]:
    """Jobs in priority order: seed by seed, env by env, true-reward PPO first."""
    jobs = []
    for seed in args.seeds:
        for env_id in args.envs:
            for variant in args.variants:
                labels = 0 if variant == "true" else max(1, round(ENVS[env_id].labels * args.labels_scale))
                jobs.append(Job(env_id, variant, seed, labels, args.timesteps, args.evaluations, args.eval_episodes))
    return jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=list(ENVS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS, help="which runs to plan")
    parser.add_argument("--timesteps", type=int, default=0, help="env steps per run; 0: the defaults' budget")
    parser.add_argument("--labels-scale", type=float, default=1.0, help="multiply every label budget (smoke runs)")
    parser.add_argument("--evaluations", type=int, default=10, help="evaluations on the true reward per run")
    parser.add_argument("--eval-episodes", type=int, default=10, help="episodes per evaluation")
    parser.add_argument("--jobs", type=int, default=1, help="runs side by side, one per idle core")
    parser.add_argument("--out", type=Path, default=RESULTS / "generality.jsonl", help="results file (JSON lines)")
    parser.add_argument("--table", action="store_true", help="print the table and plot from the results file only")
    parser.add_argument("--fresh", action="store_true", help="ignore the runs already in the results file")
    args = parser.parse_args()
    jobs = plan(args)
    rows = {} if args.fresh else load_rows(args.out, row_key)
    if not args.table:
        todo = [job for job in jobs if job.key not in rows]
        print(f"{len(todo)} runs to go ({len(jobs) - len(todo)} of {len(jobs)} in {args.out})", flush=True)
        for job, row in run_all(run_job, todo, args.jobs):
            if row is None:
                print(f"FAILED {job}", file=sys.stderr, flush=True)
                continue
            append_row(args.out, row)
            rows[row_key(row)] = row
            print(
                f"{row['env']:<26} {row['variant']:<5} seed {row['seed']}  return {row['return']:8.1f} "
                f"± {row['return_std']:.1f}  labels {row['labels_used']:5d}  {row['env_steps']} steps "
                f"{row['wall_seconds']:6.0f} s",
                flush=True,
            )
    randoms = {env_id: random_policy_return(env_id, RANDOM_EPISODES) for env_id in args.envs}
    print(
        f"\nGenerality — final true return over {args.eval_episodes} deterministic episodes; random policy over "
        f"{RANDOM_EPISODES} episodes (OMP_NUM_THREADS=1)\n"
    )
    print(table(rows, jobs, randoms))
    plot_path = args.out.with_suffix(".png")
    plot(rows, jobs, randoms, plot_path)
    print(f"\nrows in {args.out}, learning curves in {plot_path}")


if __name__ == "__main__":
    main()

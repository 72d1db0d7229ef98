"""Label efficiency and its robustness: true return reached with a small label budget, over 10 seeds per run kind.

Each run kind is a row of the table, run on every seed (0-9 unless --seeds):
  - cartpole             CartPole-v1, 100 labels, perfect teacher       target ≥ 475 on every seed
  - pendulum             Pendulum-v1, 200 labels, perfect teacher       target ≥ −200 on every seed
  - goal                 rlhf/SparseGoal-v0 (−1 per step until the goal), 200 labels, perfect teacher:
                         target (ours − random) / (true-reward PPO − random) ≥ 0.9 on every seed, against
  - goal-true-reward     PPO on the true reward, same seed (the upper bound; runs whenever goal does), and a
                         random policy's mean return over 200 episodes, measured once per invocation
  - cartpole-mistake     CartPole-v1, 100 labels, B-Pref's mistake teacher (eps 0.1)    target ≥ 475 on ≥ 8/10 seeds
  - cartpole-stochastic  CartPole-v1, 100 labels, B-Pref's stochastic teacher (beta 1)  target ≥ 475 on ≥ 8/10 seeds
  - cartpole-random      the no-signal control: CartPole-v1, 100 labels from a teacher answering at random,
                         which must teach nothing: score (return − the untrained policy's return) < 100 on every
                         seed (a return bar would fail a seed whose untrained policy already balances: seed 2's
                         scores 364)
  - cartpole-imitation, pendulum-imitation   the reference, imitation 1.0.1's PreferenceComparisons with an SB3
                         PPO agent, at the same labels, on the first 3 seeds (--reference-seeds); it runs in its own
                         venv (bench/setup_reference.sh makes it; its pins clash with ours), as a subprocess.
                         Target: our median return at least theirs, in at most 1/5 of their median wall time.

Every run is one process with one torch thread (OMP_NUM_THREADS=1), so wall times compare; --jobs N runs N of them
side by side (on a machine with at least N idle cores, or the wall times grow). Rows print as they finish; then
each run kind's seeds and a summary line: seeds reaching the target, median, worst, median "equal" answers, median
wall time, and whether the target holds; and a plot beside the results file (its name with .png) of every seed's
true return against env steps, one axes per run kind. Each finished run is appended as a JSON line to the
results file, and a later invocation reuses the rows found there (same kind, env, seed, teacher, labels and
timesteps) instead of running them again, so a long table can be finished in several sittings (--fresh starts
over).

    python bench/label_efficiency.py                   # everything (hours on 2 cores)
    python bench/label_efficiency.py --no-reference    # ours only
    python bench/label_efficiency.py --jobs 2 --runs cartpole cartpole-random --seeds 0 1 2
    python bench/label_efficiency.py --timesteps 3000 --labels-scale 0.1 --seeds 0 1 --out /tmp/le.jsonl  # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from run_table import append_row, fmt, load_rows, random_policy_return, run_all, save_figure  # noqa: E402

from worker.config import RunConfig  # noqa: E402
from worker.goal_env import SPARSE_GOAL_ID  # noqa: E402
from worker.loop import run  # noqa: E402

BENCH = Path(__file__).resolve().parent
REFERENCE_PYTHON = BENCH / ".venvs" / "imitation" / "bin" / "python"
RANDOM_EPISODES = 200
GOAL_SHARE = 0.9  # of true-reward PPO's improvement over a random policy


@dataclass(frozen=True)
class RunKind:
    """One row of the table: what runs on each seed, and the target its seeds are held to."""

    name: str
    env_id: str
    labels: int
    teacher: str = "perfect"
    true_reward: bool = False
    """PPO on the env's own reward instead of the learned one."""
    reference: bool = False
    """imitation's PreferenceComparisons instead of ours."""
    target: float | None = None
    """Each seed's bar (for `goal`, on the normalized score); None: no target of its own."""
    below: bool = False
    """The bar is an upper bound (the control must stay under it)."""
    seeds_needed: float = 1.0
    """Share of the seeds that must clear the bar."""
    from_start: bool = False
    """The bar is on the gain over the run's untrained policy (its curve's first point), not on the return."""

    def reached(self, value: float | None) -> bool:
        if value is None or self.target is None:
            return False
        return value < self.target if self.below else value >= self.target


RUN_KINDS = {
    kind.name: kind
    for kind in (
        RunKind("cartpole", "CartPole-v1", 100, target=475.0),
        RunKind("pendulum", "Pendulum-v1", 200, target=-200.0),
        RunKind("goal-true-reward", SPARSE_GOAL_ID, 0, teacher="none", true_reward=True),
        RunKind("goal", SPARSE_GOAL_ID, 200, target=GOAL_SHARE),
        RunKind("cartpole-mistake", "CartPole-v1", 100, teacher="mistake", target=475.0, seeds_needed=0.8),
        RunKind("cartpole-stochastic", "CartPole-v1", 100, teacher="stochastic", target=475.0, seeds_needed=0.8),
        RunKind("cartpole-random", "CartPole-v1", 100, teacher="random", target=100.0, below=True, from_start=True),
        RunKind("cartpole-imitation", "CartPole-v1", 100, reference=True),
        RunKind("pendulum-imitation", "Pendulum-v1", 200, reference=True),
    )
}
# Which of our run kinds each reference run kind is compared with, and the sparse goal's upper bound.
COMPARED = {"cartpole-imitation": "cartpole", "pendulum-imitation": "pendulum"}
UPPER_BOUND = {"goal": "goal-true-reward"}


@dataclass(frozen=True)
class Job:
    """One run: a run kind on one seed, at its (scaled) label budget."""

    kind: str
    seed: int
    labels: int
    timesteps: int
    """Env steps asked for (0: the env's default); always 0 for the reference, which keeps its own."""

    @property
    def key(self) -> tuple:
        spec = RUN_KINDS[self.kind]
        return (self.kind, spec.env_id, self.seed, spec.teacher, self.labels, self.timesteps)


def row_key(row: dict) -> tuple:
    return (row["kind"], row["env"], row["seed"], row["teacher"], row["labels"], row["timesteps"])


# ---- the runs ---------------------------------------------------------------------------------------------
def ours(job: Job) -> dict:
    """Our loop in this process; the row's numbers from its metrics."""
    spec = RUN_KINDS[job.kind]
    teacher = "perfect" if spec.true_reward else spec.teacher
    config = RunConfig(
        env_id=spec.env_id,
        labels=job.labels,
        seed=job.seed,
        teacher=teacher,
        true_reward=spec.true_reward,
        timesteps=job.timesteps,
    )
    metrics = run(config).metrics
    return {
        "return": metrics["final_true_return"],
        "return_std": metrics["final_true_return_std"],
        "labels_used": metrics["labels_used"],
        "choices": None if spec.true_reward else metrics["choices"],
        "wall_seconds": metrics["wall_seconds"],
        "env_steps": metrics["timesteps"],
        "curve": [[point["env/timesteps"], point["env/true_return"]] for point in metrics["curve"]],
    }


def reference(env_id: str, seed: int, labels: int) -> dict | None:
    if not REFERENCE_PYTHON.exists():
        subprocess.run(["bash", str(BENCH / "setup_reference.sh")], check=True)
    command = [str(REFERENCE_PYTHON), str(BENCH / "reference_imitation.py"), "--env", env_id]
    command += ["--seed", str(seed), "--labels", str(labels)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        print(f"  reference failed: {done.stderr[-500:]}", file=sys.stderr)
        return None
    return json.loads(lines[-1])


def theirs(job: Job) -> dict | None:
    """The reference run; None when its subprocess printed no result (nothing is saved, a later call retries)."""
    result = reference(RUN_KINDS[job.kind].env_id, job.seed, job.labels)
    if result is None:
        return None
    return {
        "return": result["true_return"],  # None when imitation crashed (its "error" says why)
        "return_std": result["true_return_std"],
        "labels_used": job.labels,
        "choices": None,
        "wall_seconds": result["wall_seconds"],
        "env_steps": result["env_steps_total"],
        **({"error": result["error"]} if "error" in result else {}),
    }


def run_job(job: Job) -> dict | None:
    """One run, in whichever process it lands: its row for the results file."""
    spec = RUN_KINDS[job.kind]
    result = theirs(job) if spec.reference else ours(job)
    if result is None:
        return None
    return {
        "kind": job.kind,
        "env": spec.env_id,
        "seed": job.seed,
        "teacher": spec.teacher,
        "labels": job.labels,
        "timesteps": job.timesteps,
        **result,
    }


# ---- printing ---------------------------------------------------------------------------------------------


def score(row: dict, rows: dict[tuple, dict], random_return: float | None) -> float | None:
    """What the run kind's target is checked on: the return, or for `goal` the share of true-reward PPO's
    improvement over a random policy that this seed reached (None while its upper-bound run is missing), or
    for the control the gain over its untrained policy."""
    if RUN_KINDS[row["kind"]].from_start:
        return None if row["return"] is None or not row.get("curve") else row["return"] - row["curve"][0][1]
    if row["kind"] not in UPPER_BOUND:
        return row["return"]
    bound_kind = RUN_KINDS[UPPER_BOUND[row["kind"]]]
    bound = rows.get((bound_kind.name, row["env"], row["seed"], bound_kind.teacher, 0, row["timesteps"]))
    if bound is None or random_return is None or row["return"] is None or bound["return"] - random_return <= 0:
        return None
    return (row["return"] - random_return) / (bound["return"] - random_return)


def scored(kind: str) -> bool:
    """Whether the run kind's bar is on a score of its own rather than on the return (see `score`)."""
    return kind in UPPER_BOUND or RUN_KINDS[kind].from_start


HEADER = (
    f"{'run kind':<20} {'env':<18} {'seed':>4} {'teacher':<10} {'labels':>6} {'return':>8} {'score':>6} "
    f"{'used':>5} {'equal':>5} {'wall s':>7} {'target':>6}"
)


def row_line(row: dict, value: float | None) -> str:
    spec = RUN_KINDS[row["kind"]]
    equal = "—" if row["choices"] is None else str(row["choices"]["equal"])
    target = "—" if spec.target is None else ("yes" if spec.reached(value) else "NO")
    shown = fmt(value, ".2f") if scored(row["kind"]) else ""
    return (
        f"{row['kind']:<20} {row['env']:<18} {row['seed']:>4} {row['teacher']:<10} {row['labels']:>6} "
        f"{fmt(row['return'], '.1f'):>8} {shown:>6} {row['labels_used']:>5} {equal:>5} "
        f"{fmt(row['wall_seconds'], '.1f'):>7} "
        f"{target:>6}" + (f"  ({row['error']})" if row.get("error") else "")
    )


def summary_line(kind: str, kind_rows: list[dict], values: list[float | None]) -> str:
    """Seeds reaching the bar, median and worst (of the score the target is on), median equal answers and wall
    time, and whether the run kind's target holds."""
    spec = RUN_KINDS[kind]
    spec_fmt = ".2f" if scored(kind) else ".1f"
    known = [v for v in values if v is not None]
    worst = (max if spec.below else min)(known) if known else None
    equals = [r["choices"]["equal"] for r in kind_rows if r["choices"] is not None]
    walls = [r["wall_seconds"] for r in kind_rows if r["wall_seconds"] is not None]
    parts = [
        f"median {fmt(statistics.median(known) if known else None, spec_fmt)}"
        + (f" ({len(values) - len(known)} without a {'score' if scored(kind) else 'return'})"
           if len(known) < len(values) else ""),
        f"worst {fmt(worst, spec_fmt)}",
        f"median equal {fmt(statistics.median(equals) if equals else None, '.0f')}",
        f"median wall {fmt(statistics.median(walls) if walls else None, '.1f')} s",
    ]
    if spec.target is None:
        return f"  {len(kind_rows)} seeds: " + ", ".join(parts)
    hits = sum(spec.reached(v) for v in values)
    bar = ("score " if scored(kind) else "") + f"{'<' if spec.below else '≥'} {spec.target:g}"
    share = "every seed" if spec.seeds_needed == 1 else f"≥ {spec.seeds_needed:.0%} of seeds"
    holds = hits >= spec.seeds_needed * len(kind_rows) - 1e-9
    return (
        f"  {hits}/{len(kind_rows)} seeds {bar}: " + ", ".join(parts)
        + f" — target ({bar} on {share}) {'holds' if holds else 'FAILS'}"
    )


def comparison_line(kind: str, rows: dict[tuple, dict], chosen: list[dict]) -> str | None:
    """Ours vs the reference on the seeds the reference ran, at equal labels."""
    mine_by_seed = {r["seed"]: r for r in chosen if r["kind"] == COMPARED[kind]}
    pairs = [(mine_by_seed[r["seed"]], r) for r in chosen if r["kind"] == kind and r["seed"] in mine_by_seed]
    pairs = [(m, t) for m, t in pairs if t["return"] is not None]
    if not pairs:
        return None
    mine = statistics.median(m["return"] for m, _ in pairs)
    their = statistics.median(t["return"] for _, t in pairs)
    mine_wall = statistics.median(m["wall_seconds"] for m, _ in pairs)
    their_wall = statistics.median(t["wall_seconds"] for _, t in pairs)
    ratio = mine_wall / their_wall if their_wall else None
    holds = mine >= their and ratio is not None and ratio <= 1 / 5
    seeds = " ".join(str(m["seed"]) for m, _ in pairs)
    return (
        f"  vs {COMPARED[kind]} on seeds {seeds}: ours median {mine:.1f} vs theirs {their:.1f} at "
        f"{pairs[0][1]['labels']} labels; wall {mine_wall:.1f} s vs {their_wall:.1f} s, ratio {fmt(ratio, '.2f')} "
        f"— target (ours ≥ theirs in ≤ 1/5 of their time) {'holds' if holds else 'FAILS'}"
    )


def plot_curves(kinds: list[str], jobs: list[Job], rows: dict[tuple, dict], path: Path) -> None:
    """One axes per run kind of ours: each seed's true return against env steps, and the kind's bar."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    drawn = [k for k in kinds if any(rows.get(j.key, {}).get("curve") for j in jobs if j.kind == k)]
    if not drawn:
        return
    columns = min(3, len(drawn))
    lines = -(-len(drawn) // columns)
    fig, axes = plt.subplots(lines, columns, figsize=(5 * columns, 3.6 * lines), squeeze=False)
    for ax, kind in zip(axes.flat, drawn, strict=False):
        spec = RUN_KINDS[kind]
        drawn_jobs = [j for j in jobs if j.kind == kind and rows.get(j.key, {}).get("curve")]
        for job in drawn_jobs:
            steps, returns = zip(*rows[job.key]["curve"], strict=True)
            ax.plot(steps, returns, marker=".", linewidth=1, label=f"seed {job.seed}")
        if spec.target is not None and not scored(kind):
            ax.axhline(spec.target, color="black", linestyle="--", linewidth=1,
                       label="stay below" if spec.below else "bar")
        about = "true reward" if spec.true_reward else f"{drawn_jobs[0].labels} labels, {spec.teacher}"
        ax.set(title=f"{kind} ({about})", xlabel="env steps", ylabel="true return")
        ax.xaxis.set_major_formatter(lambda value, _: f"{value / 1000:g}k")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7, ncol=2)
    for ax in list(axes.flat)[len(drawn):]:
        ax.axis("off")
    save_figure(fig, path)


def print_table(kinds: list[str], jobs: list[Job], rows: dict[tuple, dict], random_return: float | None) -> None:
    print("\nLabel efficiency — true return over 20 deterministic episodes (OMP_NUM_THREADS=1)")
    if random_return is not None:
        print(f"random policy on {SPARSE_GOAL_ID}: mean return {random_return:.1f} over {RANDOM_EPISODES} episodes")
    print(HEADER)
    for kind in kinds:
        chosen = [rows[job.key] for job in jobs if job.kind == kind and job.key in rows]
        if not chosen:
            continue
        values = [score(row, rows, random_return) for row in chosen]
        for row, value in zip(chosen, values, strict=True):
            print(row_line(row, value))
        print(summary_line(kind, chosen, values))
        if kind in COMPARED:
            every = [rows[job.key] for job in jobs if job.key in rows]
            line = comparison_line(kind, rows, every)
            if line:
                print(line)


# ---- the invocation ---------------------------------------------------------------------------------------
def plan(args: argparse.Namespace) -> tuple[list[str], list[Job]]:
    """The run kinds chosen by --runs, --envs and --no-reference, and one job per (kind, seed)."""
    kinds = [k for k in args.runs if RUN_KINDS[k].env_id in args.envs]
    if args.no_reference:
        kinds = [k for k in kinds if not RUN_KINDS[k].reference]
    for kind, bound in UPPER_BOUND.items():  # a score needs its upper bound
        if kind in kinds and bound not in kinds:
            kinds.insert(kinds.index(kind), bound)
    jobs = []
    for kind in kinds:
        spec = RUN_KINDS[kind]
        seeds = args.seeds[: args.reference_seeds] if spec.reference else args.seeds
        labels = 0 if spec.true_reward else max(1, round(spec.labels * args.labels_scale))
        timesteps = 0 if spec.reference else args.timesteps
        jobs += [Job(kind, seed, labels, timesteps) for seed in seeds]
    return kinds, jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--runs", nargs="+", choices=list(RUN_KINDS), default=list(RUN_KINDS), metavar="KIND",
                        help=f"run kinds to run (default all: {' '.join(RUN_KINDS)})")
    envs = sorted({kind.env_id for kind in RUN_KINDS.values()})
    parser.add_argument("--envs", nargs="+", choices=envs, default=envs, help="only the run kinds on these envs")
    parser.add_argument("--reference-seeds", type=int, default=3, help="imitation runs on the first N seeds")
    parser.add_argument("--no-reference", action="store_true", help="skip imitation")
    parser.add_argument("--jobs", type=int, default=1, help="runs side by side, one process each")
    parser.add_argument("--timesteps", type=int, default=0, help="env steps per run of ours (0: the env's default)")
    parser.add_argument("--labels-scale", type=float, default=1.0, help="multiply every label budget (smoke tests)")
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "label_efficiency.jsonl")
    parser.add_argument("--fresh", action="store_true", help="ignore the rows already in --out and run them again")
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")

    kinds, jobs = plan(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = {} if args.fresh else load_rows(args.out, row_key)
    todo = [job for job in jobs if job.key not in rows]
    print(f"{len(jobs) - len(todo)} of {len(jobs)} runs found in {args.out}, {len(todo)} to run", file=sys.stderr)
    if any(RUN_KINDS[job.kind].reference for job in todo) and not REFERENCE_PYTHON.exists():
        subprocess.run(["bash", str(BENCH / "setup_reference.sh")], check=True)  # once, not in each process
    random_return = None
    if any(RUN_KINDS[kind].env_id == SPARSE_GOAL_ID for kind in kinds):
        random_return = random_policy_return(SPARSE_GOAL_ID, RANDOM_EPISODES)

    failed = 0
    print(HEADER, file=sys.stderr)
    for job, row in run_all(run_job, todo, args.jobs):
        if row is None:
            failed += 1
            print(f"{job.kind} seed {job.seed}: failed, not saved", file=sys.stderr, flush=True)
            continue
        append_row(args.out, row)
        rows[row_key(row)] = row
        print(row_line(row, score(row, rows, random_return)), file=sys.stderr, flush=True)

    print_table(kinds, jobs, rows, random_return)
    plot = args.out.with_suffix(".png")
    plot_curves(kinds, jobs, rows, plot)
    print(f"\nrows in {args.out}, learning curves in {plot}")
    if failed:
        sys.exit(f"{failed} runs failed; run again to retry them")


if __name__ == "__main__":
    main()

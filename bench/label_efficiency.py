"""Label efficiency: true return reached with a small label budget, ours vs imitation 1.0.1, in one invocation.

For CartPole-v1 (100 labels) and Pendulum-v1 (200 labels), seeds 0, 1, 2, perfect teacher:
  - our `rlhf run` loop, in this process;
  - the reference, imitation's PreferenceComparisons with an SB3 PPO agent, in its own venv
    (bench/setup_reference.sh makes it; its pins clash with ours), as a subprocess;
  - a no-signal control: our CartPole run with a teacher that answers at random.
Everything runs one process at a time with one torch thread (OMP_NUM_THREADS=1), so wall times compare.

    python bench/label_efficiency.py                 # everything (about 20 minutes on 2 cores)
    python bench/label_efficiency.py --no-reference  # ours and the control only

Targets: CartPole ≥ 475 on every seed in ≤ 60 s each; Pendulum ≥ −200 on every seed; our return at least
theirs at equal labels in at most 1/3 of their wall time; the random-teacher control far below 475.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from worker.config import RunConfig  # noqa: E402
from worker.loop import run  # noqa: E402

BENCH = Path(__file__).resolve().parent
REFERENCE_PYTHON = BENCH / ".venvs" / "imitation" / "bin" / "python"
LABELS = {"CartPole-v1": 100, "Pendulum-v1": 200}
TARGET = {"CartPole-v1": 475.0, "Pendulum-v1": -200.0}


def ours(env_id: str, seed: int, labels: int, teacher: str = "perfect") -> dict:
    metrics = run(RunConfig(env_id=env_id, labels=labels, seed=seed, teacher=teacher)).metrics
    return {k: metrics[k] for k in ("final_true_return", "final_true_return_std", "wall_seconds", "timesteps")}


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


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "—" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--envs", nargs="+", default=list(LABELS))
    parser.add_argument("--no-reference", action="store_true", help="skip imitation (ours and control only)")
    parser.add_argument("--no-control", action="store_true", help="skip the random-teacher control")
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "label_efficiency.json")
    args = parser.parse_args()

    rows = []
    for env_id in args.envs:
        for seed in args.seeds:
            labels = LABELS[env_id]
            print(f"{env_id} seed {seed}: ours …", file=sys.stderr, flush=True)
            row = {"env": env_id, "seed": seed, "labels": labels, "ours": ours(env_id, seed, labels)}
            if not args.no_reference:
                print(f"{env_id} seed {seed}: imitation …", file=sys.stderr, flush=True)
                row["theirs"] = reference(env_id, seed, labels)
            rows.append(row)
    controls = []
    if not args.no_control:
        for seed in args.seeds:
            print(f"CartPole-v1 seed {seed}: random-teacher control …", file=sys.stderr, flush=True)
            controls.append({"seed": seed, "ours": ours("CartPole-v1", seed, LABELS["CartPole-v1"], "random")})

    print("\nLabel efficiency — perfect teacher, true return over 20 deterministic episodes (OMP_NUM_THREADS=1)")
    print(
        f"{'env':<13} {'seed':>4} {'labels':>6} {'ours return':>12} {'ours s':>7} {'ours steps':>10} "
        f"{'their return':>12} {'their s':>8} {'return ratio':>12} {'time ratio':>10} {'≥ theirs':>8} {'target':>7}"
    )
    for row in rows:
        mine, theirs = row["ours"], row.get("theirs") or {}
        their_return, their_wall = theirs.get("true_return"), theirs.get("wall_seconds")
        ratio = mine["final_true_return"] / their_return if their_return else None
        time_ratio = mine["wall_seconds"] / their_wall if their_wall else None
        reached = mine["final_true_return"] >= TARGET[row["env"]]
        # With negative returns (Pendulum) a ratio below 1 is the better one: say plainly who is ahead.
        beats = "—" if their_return is None else ("yes" if mine["final_true_return"] >= their_return else "NO")
        print(
            f"{row['env']:<13} {row['seed']:>4} {row['labels']:>6} {mine['final_true_return']:>12.1f} "
            f"{mine['wall_seconds']:>7.1f} {mine['timesteps']:>10} {fmt(their_return):>12} {fmt(their_wall):>8} "
            f"{fmt(ratio, '.2f'):>12} {fmt(time_ratio, '.2f'):>10} {beats:>8} {'yes' if reached else 'NO':>7}"
        )
    if controls:
        print("\nNo-signal control — CartPole-v1, 100 labels from a teacher answering at random")
        for control in controls:
            mine = control["ours"]
            seconds = mine["wall_seconds"]
            print(f"  seed {control['seed']}: true return {mine['final_true_return']:.1f} in {seconds:.1f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "controls": controls}, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

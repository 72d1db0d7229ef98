"""The `rlhf` command. Each subcommand imports what it needs when it runs, so `rlhf --help` stays quick."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from worker.pairs import QUERY_METHODS
from worker.teachers import TEACHER_NAMES

USAGE_ERROR = 2


class CliError(Exception):
    """A bad option: reported as one line naming it, exit code 2."""


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse prints usage plus the error; we print just the error, on one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="rlhf", description="Reinforcement learning from human preferences.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineErrorParser)

    run = commands.add_parser("run", help="run the RLHF loop headless with a synthetic teacher")
    run.add_argument("--env", default="CartPole-v1", help="Gymnasium environment id (default CartPole-v1)")
    run.add_argument("--labels", type=non_negative_int, default=100, help="label budget (default 100)")
    run.add_argument("--timesteps", type=non_negative_int, default=0, help="env steps (default: per env)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--teacher", default="perfect", help=f"one of {', '.join(TEACHER_NAMES)}")
    run.add_argument("--teacher-beta", type=float, help="rationality β (stochastic teacher)")
    run.add_argument("--teacher-gamma", type=float, help="myopia γ (myopic teacher)")
    run.add_argument("--teacher-eps-mistake", type=float, help="chance of a flipped answer")
    run.add_argument("--teacher-eps-skip", type=float, help="skip threshold, times the typical segment return")
    run.add_argument("--teacher-eps-equal", type=float, help="equal threshold, times the typical segment return")
    run.add_argument("--query", default="disagreement", help=f"pair selection: {' or '.join(QUERY_METHODS)}")
    run.add_argument("--segment-length", type=positive_int, default=None, help="steps per segment (default: per env)")
    run.add_argument("--true-reward", action="store_true", help="train PPO on the true reward (upper bound)")
    run.add_argument("--out", type=Path, default=Path("runs/latest"), help="output folder (default runs/latest)")
    run.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")

    evaluate = commands.add_parser("eval", help="reload a run's checkpoint and score it on the true reward")
    evaluate.add_argument("out", type=Path, help="a run's output folder")
    evaluate.add_argument("--episodes", type=positive_int, default=20)
    evaluate.add_argument("--device", default="auto")

    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", required=True, parser_class=OneLineErrorParser)
    db_commands.add_parser("upgrade", help="apply the Alembic migrations to RLHF_DATABASE_URL")
    return parser


def run_config_from_args(args: argparse.Namespace):
    """A RunConfig from `rlhf run` options, or CliError naming the bad option."""
    from worker.config import RunConfig
    from worker.device import pick_device
    from worker.envs import validate_env_id

    try:
        validate_env_id(args.env)
    except ValueError as error:
        raise CliError(f"--env: {error}") from None
    if args.teacher not in TEACHER_NAMES:
        raise CliError(f"--teacher: unknown teacher '{args.teacher}' (choose from {', '.join(TEACHER_NAMES)})")
    if args.query not in QUERY_METHODS:
        raise CliError(f"--query: unknown query method '{args.query}' (choose from {', '.join(QUERY_METHODS)})")
    try:
        pick_device(args.device)
    except ValueError as error:
        raise CliError(f"--device: {error}") from None
    teacher_params = {}
    for name in ("beta", "gamma", "eps_mistake", "eps_skip", "eps_equal"):
        value = getattr(args, f"teacher_{name}")
        if value is None:
            continue
        option = f"--teacher-{name.replace('_', '-')}"
        if not math.isfinite(value) and not (name == "beta" and value == math.inf):
            raise CliError(f"{option}: must be a finite number, got {value}")
        if name == "gamma" and not 0 < value <= 1:
            raise CliError(f"{option}: must be in (0, 1], got {value}")
        if name == "beta" and value <= 0:
            raise CliError(f"{option}: must be > 0, got {value}")
        if name.startswith("eps") and not 0 <= value <= 1:
            raise CliError(f"{option}: must be in [0, 1], got {value}")
        teacher_params[name] = value
    return RunConfig(
        env_id=args.env,
        labels=args.labels,
        timesteps=args.timesteps,
        seed=args.seed,
        teacher=args.teacher,
        teacher_params=teacher_params,
        query=args.query,
        segment_length=args.segment_length or 0,
        true_reward=args.true_reward,
        device=args.device,
    )


def command_run(args: argparse.Namespace) -> int:
    config = run_config_from_args(args)
    from tqdm import tqdm

    from worker.loop import run, save_run

    total = config.resolved().timesteps
    with tqdm(total=total, unit="step", disable=args.no_progress, dynamic_ncols=True) as bar:

        def show(info: dict[str, float]) -> None:
            bar.update(int(info["timesteps"]) - bar.n)
            bar.set_postfix(
                labels=int(info["labels"]),
                acc=f"{info['reward_accuracy']:.2f}",
                ret=f"{info['true_return']:.1f}",
                refresh=False,
            )

        result = run(config, progress=show)
    save_run(result, args.out)
    m = result.metrics
    print(
        f"{m['env']}: true return {m['final_true_return']:.1f} ± {m['final_true_return_std']:.1f} "
        f"with {m['labels_used']} labels, {m['timesteps']} steps, {m['wall_seconds']:.1f} s; "
        f"reward accuracy {m['reward_model_accuracy']:.2f}, correlation {m['reward_correlation']:.2f}"
    )
    print(f"wrote {args.out / 'metrics.json'}, {args.out / 'curve.png'}, {args.out / 'checkpoint.pt'}")
    return 0


def command_eval(args: argparse.Namespace) -> int:
    if not (args.out / "checkpoint.pt").is_file():
        raise CliError(f"out: no checkpoint.pt in '{args.out}'")
    from worker.loop import load_policy

    config, ppo = load_policy(args.out, args.device)
    mean, std = ppo.evaluate(args.episodes, seed=config.seed + 20_000)
    print(json.dumps({"env": config.env_id, "episodes": args.episodes, "true_return": mean, "true_return_std": std}))
    return 0


def command_db(args: argparse.Namespace) -> int:
    from app.migrate import upgrade_database
    from app.settings import Settings

    upgrade_database(Settings())
    print("database is up to date")
    return 0


COMMANDS = {"run": command_run, "eval": command_eval, "db": command_db}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except CliError as error:
        print(f"rlhf {args.command}: error: {error}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())

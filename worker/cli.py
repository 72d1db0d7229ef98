"""The `rlhf` command. Each subcommand imports what it needs when it runs, so `rlhf --help` stays quick."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

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
    run.add_argument(
        "--env",
        default="CartPole-v1",
        help="a Gymnasium id (default CartPole-v1), module:Id, or module:ClassName for your own gymnasium.Env",
    )
    run.add_argument("--env-module", metavar="MODULE", help="import MODULE first, so that it registers --env")
    run.add_argument("--labels", type=non_negative_int, default=100, help="label budget (default 100)")
    run.add_argument("--timesteps", type=non_negative_int, default=0, help="env steps (default: per env)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--teacher", default="perfect", help=f"one of {', '.join(TEACHER_NAMES)}")
    run.add_argument("--teacher-beta", type=float, help="rationality β (stochastic teacher)")
    run.add_argument("--teacher-gamma", type=float, help="myopia γ (myopic teacher)")
    run.add_argument("--teacher-eps-mistake", type=float, help="chance of a flipped answer")
    run.add_argument("--teacher-eps-skip", type=float, help="skip threshold, times the typical segment return")
    run.add_argument("--teacher-eps-equal", type=float, help="equal threshold, times the typical segment return")
    run.add_argument("--query", default="informative", help=f"pair selection: {' or '.join(QUERY_METHODS)}")
    run.add_argument("--segment-length", type=positive_int, default=None, help="steps per segment (default: per env)")
    run.add_argument("--true-reward", action="store_true", help="train PPO on the true reward (upper bound)")
    run.add_argument(
        "--explore-until-trusted",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="train on the state-entropy bonus while the reward model is not trusted (default: on for envs "
        "without tuned settings)",
    )
    run.add_argument("--out", type=Path, default=Path("runs/latest"), help="output folder (default runs/latest)")
    run.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--via-server", metavar="URL", help="run through a running server and its workers")
    run.add_argument("--token", help="admin token for --via-server (default: $RLHF_ADMIN_TOKEN)")

    serve = commands.add_parser("serve", help="web server plus one worker on the embedded SQLite database")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=positive_int, default=8000)
    serve.add_argument("--no-demo", action="store_true", help="do not create the CartPole-v1 demo experiment")

    worker = commands.add_parser("worker", help="a training worker: runs experiments stored in the database")
    worker.add_argument("--lease-seconds", type=float, default=30.0, help="experiment lease without heartbeat")
    worker.add_argument("--poll-seconds", type=float, default=0.5, help="pause while idle or awaiting labels")
    worker.add_argument("--exit-when-idle", action="store_true", help="exit once no experiment needs work")

    evaluate = commands.add_parser("eval", help="reload a run's checkpoint and score it on the true reward")
    evaluate.add_argument("out", type=Path, help="a run's output folder")
    evaluate.add_argument("--episodes", type=positive_int, default=20)
    evaluate.add_argument("--device", default="auto")

    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", required=True, parser_class=OneLineErrorParser)
    db_commands.add_parser("upgrade", help="apply the Alembic migrations to RLHF_DATABASE_URL")
    return parser


def run_summary(m: dict[str, Any]) -> str:
    """The line `rlhf run` ends with: the true return, the labels, the time, how good the learned reward is, and
    which policy the run kept (or that the labels never taught it anything)."""
    chosen = m["chosen_policy"]
    if chosen:
        count = len(chosen["candidates"])
        kept = f"; kept the policy of step {chosen['timesteps']} (best of {count} on the learned reward)"
    elif not m["true_reward"] and not m.get("reward_trusted", True):
        # A user reading only the return would credit the labels with what exploration (or nothing) did.
        kept = (
            "; the reward model is not trusted (it does not predict held-out labels better than chance), so the policy "
            f"learned {'from state-entropy exploration' if m['config'].get('explore_until_trusted') else 'nothing'}, "
            "not from the labels"
        )
    else:
        kept = ""
    return (
        f"{m['env']}: true return {m['final_true_return']:.1f} ± {m['final_true_return_std']:.1f} "
        f"with {m['labels_used']} labels ({m['choices']['equal']} answered equal), {m['timesteps']} steps, "
        f"{m['wall_seconds']:.1f} s; reward accuracy {m['reward/val_accuracy']:.2f}, "
        f"correlation {m['reward_correlation']:.2f}{kept}"
    )


def run_config_from_args(args: argparse.Namespace):
    """A RunConfig from `rlhf run` options, or CliError naming the bad option."""
    from worker.config import RunConfig
    from worker.device import pick_device
    from worker.envs import describe_env, import_env_module

    env_id = args.env
    if args.env_module:
        try:
            import_env_module(args.env_module)
        except ValueError as error:
            raise CliError(f"--env-module: {error}") from None
        # Gymnasium's "module:Id" form: whoever makes the env later (a worker, a resumed run) imports it too.
        env_id = f"{args.env_module}:{args.env}"
    try:
        describe_env(env_id)  # the id resolves, and its spaces are ones the learner supports
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
        env_id=env_id,
        labels=args.labels,
        timesteps=args.timesteps,
        seed=args.seed,
        teacher=args.teacher,
        teacher_params=teacher_params,
        query=args.query,
        segment_length=args.segment_length or 0,
        true_reward=args.true_reward,
        explore_until_trusted=args.explore_until_trusted,
        device=args.device,
    )


def command_run(args: argparse.Namespace) -> int:
    config = run_config_from_args(args)
    if args.via_server:
        return run_via_server(args, config)
    from tqdm import tqdm

    from worker.env_settings import ENV_SETTINGS
    from worker.loop import run, save_run

    total = config.resolved().timesteps
    if config.env_id not in ENV_SETTINGS:
        print(f"no tuned settings for {config.env_id}: using the defaults, {total} env steps", file=sys.stderr)
    with tqdm(total=total, unit="step", disable=args.no_progress, dynamic_ncols=True) as bar:

        def show(info: dict[str, float]) -> None:
            bar.update(int(info["env/timesteps"]) - bar.n)
            bar.set_postfix(
                labels=int(info["labels/count"]),
                acc=f"{info['reward/val_accuracy']:.2f}",
                ret=f"{info['env/true_return']:.1f}",
                refresh=False,
            )

        result = run(config, progress=show)
    save_run(result, args.out)
    print(run_summary(result.metrics))
    print(f"wrote {args.out / 'metrics.json'}, {args.out / 'curve.png'}, {args.out / 'checkpoint.pt'}")
    return 0


def command_eval(args: argparse.Namespace) -> int:
    if not (args.out / "checkpoint.pt").is_file():
        raise CliError(f"out: no checkpoint.pt in '{args.out}'")
    from worker.loop import load_checkpoint

    learner = load_checkpoint(args.out / "checkpoint.pt", device=args.device)
    try:
        mean, std = learner.ppo.evaluate(args.episodes, seed=learner.config.seed + 20_000)
    finally:
        learner.ppo.close()
    result = {"env": learner.config.env_id, "episodes": args.episodes, "true_return": mean, "true_return_std": std}
    print(json.dumps(result))
    return 0


def command_db(args: argparse.Namespace) -> int:
    from app.migrate import upgrade_database
    from app.settings import Settings

    upgrade_database(Settings())
    print("database is up to date")
    return 0


def run_via_server(args: argparse.Namespace, config) -> int:  # noqa: ANN001 - RunConfig, imported late
    """Create an oracle experiment on a running server, follow it until a worker finishes it."""
    import os
    import time

    from app.client import ApiError, RlhfClient
    from worker.envs import describe_env

    token = args.token or os.environ.get("RLHF_ADMIN_TOKEN")
    if not token:
        raise CliError("--token: the server's admin token is needed (or set RLHF_ADMIN_TOKEN)")
    config = config.resolved()
    spaces = describe_env(config.env_id)
    started = time.perf_counter()
    try:
        with RlhfClient(args.via_server, token=token) as api:
            experiment = api.create_experiment(
                f"run-{config.env_id}-seed{config.seed}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}",
                config.env_id,
                obs_shape=list(spaces.obs_shape),
                action_shape=[] if spaces.discrete else list(spaces.action_shape),
                num_actions=spaces.num_actions if spaces.discrete else None,
                teacher_mode="oracle",
                label_budget=config.labels,
                timestep_budget=config.timesteps,
                config={"run": config.to_dict()},
            )
            experiment_id = experiment["id"]
            if not args.no_progress:
                print(f"experiment {experiment_id} queued on {args.via_server}", file=sys.stderr)
            while experiment["status"] not in ("done", "failed"):
                time.sleep(0.25)
                experiment = api.get_experiment(experiment_id)
            if experiment["status"] == "failed":  # the server's worker could not run the env named here
                raise CliError(f"--env: the server's worker could not run it: {experiment['error']}")
            series = api.get_metrics(experiment_id, keys=["env/true_return", "env/true_return_std"])
    except ApiError as error:
        raise CliError(f"--via-server: {error}") from None
    except OSError as error:  # httpx connection errors are OSError subclasses or wrap them
        raise CliError(f"--via-server: cannot reach {args.via_server}: {error}") from None
    wall = time.perf_counter() - started
    final = series["env/true_return"][-1]["value"]
    final_std = series["env/true_return_std"][-1]["value"]
    labels = experiment["counts"]["labels"]
    metrics = {
        "env": config.env_id,
        "seed": config.seed,
        "experiment_id": experiment_id,
        "labels_used": labels,
        "final_true_return": final,
        "final_true_return_std": final_std,
        "wall_seconds": wall,
        "curve": series["env/true_return"],
        "config": config.to_dict(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(
        f"{config.env_id}: true return {final:.1f} ± {final_std:.1f} with {labels} labels, "
        f"experiment {experiment_id}, {wall:.1f} s through {args.via_server}"
    )
    return 0


def check_rendering() -> None:
    """CliError (one line, exit 2) when the `mujoco` extra is installed but no OpenGL library can render its clips."""
    from worker.envs import mujoco_installed
    from worker.render import GL_MISSING, choose_gl_backend

    if mujoco_installed() and choose_gl_backend() is None:
        raise CliError(GL_MISSING)


def command_worker(args: argparse.Namespace) -> int:
    import logging

    from app.settings import Settings
    from worker.db_store import DatabaseStore
    from worker.service import StopFlag, WorkerOptions, run_worker

    if args.lease_seconds <= 0 or args.poll_seconds <= 0:
        raise CliError("--lease-seconds/--poll-seconds: must be > 0")
    check_rendering()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stop = StopFlag()
    stop.install()
    options = WorkerOptions(lease_seconds=args.lease_seconds, poll_seconds=args.poll_seconds)
    settings = Settings()
    store = DatabaseStore.open(settings)
    try:
        return run_worker(store, settings.data_dir, options, stop, exit_when_idle=args.exit_when_idle)
    finally:
        store.close()


DEMO_NAME = "cartpole-demo"


def prepare_database(settings, with_demo: bool) -> tuple[str | None, str | None]:  # noqa: ANN001 - app Settings
    """Migrate, make sure an admin token exists, and create the demo experiment with a rater invite once.

    Returns:
        (the admin token when created or configured now, the demo rater's invite token when created now).
    """
    from app import crud
    from app.db import make_engine, make_session_factory
    from app.migrate import upgrade_database
    from app.schemas import ExperimentCreate
    from worker.config import RunConfig

    upgrade_database(settings)
    engine = make_engine(settings)
    invite_token = None
    try:
        with make_session_factory(engine)() as session:
            configured = settings.admin_token.get_secret_value() if settings.admin_token else None
            _hash, admin_token = crud.ensure_admin_token(session, configured=configured)
            if with_demo and not crud.list_experiments(session):
                config = RunConfig(env_id="CartPole-v1").resolved()
                demo = crud.create_experiment(
                    session,
                    data=ExperimentCreate(
                        name=DEMO_NAME,
                        env_id="CartPole-v1",
                        teacher_mode="mixed",
                        human_timeout_seconds=300,
                        instructions="Prefer the clip where the pole stays upright and the cart stays central.",
                        label_budget=config.labels,
                        timestep_budget=config.timesteps,
                        obs_shape=[4],
                        num_actions=2,
                        config={"run": config.to_dict()},
                    ),
                )
                _rater, invite_token = crud.create_rater(session, name="demo-rater", experiment_ids=[demo.id])
    finally:
        engine.dispose()
    return admin_token or configured, invite_token


def command_serve(args: argparse.Namespace) -> int:
    """Upgrade the database, start one worker subprocess and the web server; Ctrl-C stops both."""
    import os
    import signal
    import subprocess

    import uvicorn

    from app.main import create_app
    from app.settings import Settings

    check_rendering()
    settings = Settings()
    admin_token, invite_token = prepare_database(settings, with_demo=not args.no_demo)

    base = f"http://{args.host}:{args.port}"
    env = {**os.environ, "RLHF_DATA_DIR": str(settings.data_dir.resolve())}
    if settings.database_url:
        env["RLHF_DATABASE_URL"] = settings.database_url
    server: uvicorn.Server | None = None

    def stop_serving(_signum: int, _frame: object) -> None:
        # While uvicorn runs it takes SIGINT/SIGTERM itself, and once stopped it raises the signal again for the
        # handler it found: this one, so that we go on to stop the worker instead of dying and orphaning it.
        # Before uvicorn runs, a signal ends the start-up (through the `finally` below).
        if server is None:
            raise KeyboardInterrupt

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop_serving)
    worker = subprocess.Popen([sys.executable, "-m", "worker.cli", "worker"], env=env)
    exit_code = 0
    try:
        print(f"rlhf: pages at {base}/  (API docs at {base}/docs)")
        if admin_token:
            print(f"rlhf: admin token (shown once, store it): {admin_token}")
        else:
            print("rlhf: admin token: the one printed at first start (or set RLHF_ADMIN_TOKEN)")
        if invite_token:
            print(f"rlhf: rater invite link for the demo experiment: {base}/invite/{invite_token}")
        sys.stdout.flush()  # shown now even when stdout is a pipe or a log file
        app = create_app(settings)
        # Forwarded headers are trusted only from RLHF_FORWARDED_ALLOW_IPS, which the app applies itself.
        config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", proxy_headers=False)
        server = uvicorn.Server(config)
        server.run()  # returns on Ctrl-C / SIGTERM
        if not server.started:  # e.g. the port is taken; uvicorn logged why
            exit_code = 1
    except KeyboardInterrupt:
        pass
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)  # finishes its step and checkpoints
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
    print("rlhf: stopped", flush=True)
    return exit_code


COMMANDS = {
    "run": command_run,
    "eval": command_eval,
    "db": command_db,
    "serve": command_serve,
    "worker": command_worker,
}


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

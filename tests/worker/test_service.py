"""The worker through the database: a real uvicorn over a socket, real worker processes, SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest
from postgres_databases import create_postgres_database, drop_postgres_database
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import Engine

from app.client import ApiError, RlhfClient
from app.live_server import ServerProcess
from app.migrate import upgrade_database
from app.models import Checkpoint, Job, Label, Pair, Rater, Segment
from app.settings import Settings
from worker.config import RunConfig
from worker.types import Segment as TrajectorySegment

pytestmark = pytest.mark.process  # uvicorn and `rlhf worker` processes

ADMIN_TOKEN = "service-test-token"
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Service:
    server: ServerProcess
    env: dict[str, str]
    engine: Engine
    tmp: Path
    workers: list[subprocess.Popen]
    clients: list[RlhfClient] = field(default_factory=list)  # closed at the end, with their sockets

    @property
    def url(self) -> str:
        return self.server.url

    def api(self) -> RlhfClient:
        client = RlhfClient(self.url, token=ADMIN_TOKEN)
        self.clients.append(client)
        return client

    def start_server(self) -> None:
        """uvicorn (again, on the same port) with its output in server.log; returns once /healthz answers."""
        self.server.start()

    def start_worker(self, name: str) -> subprocess.Popen:
        with (self.tmp / f"{name}.log").open("w") as log:  # the worker writes to its own copy of the file
            process = subprocess.Popen(
                [sys.executable, "-m", "worker.cli", "worker", "--lease-seconds", "3", "--poll-seconds", "0.2"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
        self.workers.append(process)
        return process

    def count(self, model: type, **where: object) -> int:
        with self.engine.connect() as connection:
            query = select(func.count()).select_from(model)
            for name, value in where.items():
                query = query.where(getattr(model, name) == value)
            return connection.scalar(query) or 0


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Service]:
    """uvicorn in a subprocess on a fresh database; workers are started by the tests."""
    data_dir = tmp_path / "data"
    database_url = None
    if request.param == "postgres":
        database_url = create_postgres_database("rlhf_service")
    settings = Settings(data_dir=data_dir, database_url=database_url)
    upgrade_database(settings)
    env = {**os.environ, "RLHF_DATA_DIR": str(data_dir), "RLHF_ADMIN_TOKEN": ADMIN_TOKEN}
    if database_url:
        env["RLHF_DATABASE_URL"] = database_url
    engine = create_engine(settings.resolved_database_url)
    server = ServerProcess(env, log=tmp_path / "server.log", startup_timeout_s=30)
    running = Service(server=server, env=env, engine=engine, tmp=tmp_path, workers=[])
    try:
        running.start_server()
        yield running
    finally:
        for process in running.workers:
            if process.poll() is None:
                process.kill()
            process.wait()
        server.kill()
        for client in running.clients:
            client.close()
        engine.dispose()
        if database_url:
            drop_postgres_database(database_url)


def create_run(api: RlhfClient, name: str, labels: int, timesteps: int, mode: str = "oracle", **config: object) -> int:
    run = RunConfig(env_id="CartPole-v1", labels=labels, timesteps=timesteps, seed=0).resolved()
    experiment = api.create_experiment(
        name,
        "CartPole-v1",
        obs_shape=[4],
        num_actions=2,
        teacher_mode=mode,
        label_budget=labels,
        timestep_budget=run.timesteps,
        config={"run": run.to_dict(), **config},
    )
    return experiment["id"]


def wait_for(condition: Callable[[], bool], timeout: float, what: str, service: Service) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            logs = "\n".join(p.read_text()[-2000:] for p in service.tmp.glob("*.log"))
            raise AssertionError(f"timed out waiting for {what}\n{logs}")
        time.sleep(0.2)


def status(api: RlhfClient, experiment_id: int) -> str:
    return api.get_experiment(experiment_id)["status"]


@pytest.mark.slow
def test_oracle_run_via_server_reaches_475_with_the_in_process_label_budget(service: Service, tmp_path: Path):
    service.start_worker("worker")
    done = subprocess.run(
        [sys.executable, "-m", "worker.cli", "run", "--via-server", service.url, "--token", ADMIN_TOKEN,
         "--labels", "100", "--seed", "0", "--no-progress", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=240, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + "\n".join(p.read_text()[-3000:] for p in tmp_path.glob("*.log"))
    with service.api() as api:
        experiment = api.list_experiments()[0]
        series = api.get_metrics(experiment["id"], keys=["env/true_return", "labels/count"])
    assert series["env/true_return"][-1]["value"] >= 475
    assert series["labels/count"][-1]["value"] == 100
    # Every label came from the oracle rater, through the one write path (one label per pair).
    assert service.count(Label) == 100 == service.count(Pair, status="complete")
    assert service.count(Rater, kind="oracle") == 1
    assert service.count(Checkpoint) >= 1


def test_web_server_killed_mid_labeling_keeps_every_acknowledged_label(
    service: Service, rng: np.random.Generator
) -> None:
    """kill -9 the web server while four raters label as fast as they can: after a restart every label a rater
    was told is stored is there, and no pair holds more labels than it wanted."""
    api = service.api()
    experiment_id = api.create_experiment("restart", "CartPole-v1", obs_shape=[4], num_actions=2)["id"]
    segments = [
        TrajectorySegment(
            obs=rng.normal(size=(5, 4)).astype(np.float32),
            actions=rng.integers(0, 2, size=5),
            true_rewards=np.ones(5, np.float32),
            ended=np.zeros(5, bool),
            env_id="CartPole-v1",
        )
        for _ in range(40)
    ]
    segment_ids = api.queue_segments(experiment_id, segments)
    pairs = [tuple(int(i) for i in rng.choice(segment_ids, 2, replace=False)) for _ in range(2000)]
    api.queue_pairs(experiment_id, pairs)
    tokens = [api.create_invite(f"rater{i}", [experiment_id])["token"] for i in range(4)]
    acknowledged: list[int] = []

    def rate(token: str) -> None:
        with RlhfClient(service.url, token=token) as rater:
            try:
                while (lease := rater.lease_pair(experiment_id)) is not None:
                    acknowledged.append(rater.submit_label(lease["pair_id"], "left")["id"])
            except (httpx.HTTPError, ApiError):
                return  # the server is gone

    threads = [threading.Thread(target=rate, args=(token,)) for token in tokens]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(acknowledged) >= 100, 60, "100 labels", service)
    service.server.kill()
    for thread in threads:
        thread.join(timeout=30)
    service.start_server()
    stored = {record["label_id"] for record in service.api().export_labels(experiment_id)}
    assert len(acknowledged) >= 100 and set(acknowledged) <= stored
    assert len(stored) - len(acknowledged) <= len(tokens)  # at most each rater's answer in flight at the kill
    with service.engine.connect() as connection:
        overfilled = connection.scalar(
            select(func.count()).select_from(Pair).where(Pair.labels_count > Pair.labels_wanted)
        )
    assert overfilled == 0


@pytest.mark.slow
def test_kill_9_mid_training_then_another_worker_finishes_with_every_label_once(service: Service):
    budget = 40
    with service.api() as api:
        experiment_id = create_run(api, "crash", labels=budget, timesteps=24_000)
        first = service.start_worker("first")
        wait_for(lambda: service.count(Label) >= 15 and service.count(Checkpoint) >= 1, 90, "labels", service)
        first.send_signal(signal.SIGKILL)
        first.wait()
        labels_at_crash = service.count(Label)
        service.start_worker("second")
        wait_for(lambda: status(api, experiment_id) == "done", 150, "the experiment to finish", service)
    assert labels_at_crash < budget
    assert service.count(Label) == budget == service.count(Pair)
    with service.engine.connect() as connection:
        per_pair = connection.execute(select(Label.pair_id, func.count()).group_by(Label.pair_id)).all()
    assert len(per_pair) == budget and all(count == 1 for _pair, count in per_pair)
    assert "resumed at" in (service.tmp / "second.log").read_text()


# The many-worker property is PostgreSQL's (SKIP LOCKED).
@pytest.mark.slow
@pytest.mark.parametrize("service", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_two_workers_on_postgres_share_experiments_and_never_run_a_job_twice(service: Service):
    with service.api() as api:
        # Clips are rendered for these oracle runs too, so both workers claim render jobs concurrently. Twenty
        # short experiments keep the two workers busy for about a minute.
        ids = [create_run(api, f"shared-{i}", labels=12, timesteps=6_000, render_clips=True) for i in range(20)]
        service.start_worker("a")
        service.start_worker("b")
        wait_for(lambda: all(status(api, i) == "done" for i in ids), 600, "every experiment", service)
        wait_for(lambda: service.count(Job, status="queued") + service.count(Job, status="running") == 0, 60,
                 "the render jobs", service)  # fmt: skip
        for experiment_id in ids:
            assert api.get_experiment(experiment_id)["counts"]["labels"] == 12
    with service.engine.connect() as connection:
        jobs = connection.execute(select(Job.status, Job.attempts, Job.claimed_by)).all()
    assert jobs and all(job.status == "done" and job.attempts == 1 for job in jobs)
    # Each experiment had its own owner at the time: both workers trained.
    logs = [(service.tmp / f"{name}.log").read_text() for name in ("a", "b")]
    assert all("done: true return" in log for log in logs), logs


@pytest.mark.slow
@pytest.mark.parametrize("service", ["sqlite"], indirect=True)  # does not depend on the database: run once
def test_switching_to_human_mode_stops_synthetic_labels_at_the_next_pair(service: Service):
    with service.api() as api:
        experiment_id = create_run(api, "switch", labels=100, timesteps=60_000)
        worker = service.start_worker("worker")
        wait_for(lambda: service.count(Label) >= 25, 90, "the first labels", service)
        api.update_experiment(experiment_id, teacher_mode="human")
        at_switch = service.count(Label)
        # The next batch of pairs is queued, and then nobody answers it.
        wait_for(lambda: service.count(Pair, status="pending") > 0, 60, "pairs for humans", service)
        time.sleep(2.0)
        stalled = service.count(Label)
        assert service.count(Pair, status="pending") > 0
        assert stalled - at_switch <= 1  # at most the one pair the oracle was answering at the switch
        time.sleep(1.0)
        assert service.count(Label) == stalled
        # A human answers through the API; the worker sees it.
        invite = api.create_invite("human", [experiment_id])
        with RlhfClient(service.url, token=invite["token"]) as rater:
            lease = rater.lease_pair(experiment_id)
            assert lease is not None
            rater.submit_label(lease["pair_id"], "left")
        assert service.count(Label) == stalled + 1
        # SIGTERM while it waits for humans: checkpoint and exit 0.
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
        assert service.count(Checkpoint) >= 1


@pytest.mark.parametrize("service", ["sqlite"], indirect=True)  # does not depend on the database: run once
def test_pairs_for_human_raters_appear_only_once_both_clips_are_ready(service: Service):
    with service.api() as api:
        create_run(api, "clips-first", labels=10, timesteps=6_000, mode="human")
        service.start_worker("worker")
        wait_for(lambda: service.count(Pair, status="pending") > 0, 90, "pairs for humans", service)
    with service.engine.connect() as connection:
        pairs = connection.execute(select(Pair.left_segment_id, Pair.right_segment_id)).all()
        statuses = dict(connection.execute(select(Segment.id, Segment.clip_status)).all())
    assert pairs
    assert all(statuses[left] == "ready" and statuses[right] == "ready" for left, right in pairs)


@pytest.mark.slow
@pytest.mark.parametrize("service", ["sqlite"], indirect=True)  # does not depend on the database: run once
def test_a_users_env_trains_and_one_the_worker_cannot_make_fails_alone(service: Service):
    # The worker imports the user's module from its PYTHONPATH: tests/ holds custom_envs.
    service.env["PYTHONPATH"] = os.pathsep.join([str(REPO / "tests"), service.env.get("PYTHONPATH", "")])
    run = {"labels": 10, "timesteps": 2048, "segment_length": 10}
    with service.api() as api:

        def create(name: str, env_id: str, obs_shape: list[int]) -> int:
            experiment = api.create_experiment(
                name, env_id, obs_shape=obs_shape, num_actions=2, teacher_mode="oracle", config={"run": run}
            )
            return experiment["id"]

        # In id order, as the worker takes them: the failures come first, and the worker carries on.
        missing = create("missing-module", "no_such_module:Walk", [1])
        dict_obs = create("dict-observations", "custom_envs:DictObservations", [1])
        wrong = create("wrong-spaces", "custom_envs:Walk", [3])
        by_class = create("by-class", "custom_envs:Walk", [1])
        by_id = create("by-registered-id", "custom_envs:custom/Walk-v0", [1])
        worker = service.start_worker("worker")
        wait_for(lambda: status(api, by_class) == status(api, by_id) == "done", 180, "the users' envs", service)
        assert worker.poll() is None  # still serving
        failed = {i: api.get_experiment(i) for i in (missing, dict_obs, wrong)}
        trained = api.get_experiment(by_class)
    assert [e["status"] for e in failed.values()] == ["failed"] * 3
    assert failed[missing]["error"].startswith("cannot import env module 'no_such_module': ModuleNotFoundError")
    assert "Dict(" in failed[dict_obs]["error"] and "is not supported" in failed[dict_obs]["error"]
    assert "observations [1]" in failed[wrong]["error"] and "created with observations [3]" in failed[wrong]["error"]
    assert trained["error"] is None and trained["counts"]["labels"] == 10
    assert "failed: cannot import env module 'no_such_module'" in (service.tmp / "worker.log").read_text()


@pytest.mark.parametrize("service", ["sqlite"], indirect=True)
def test_run_via_server_says_when_the_servers_worker_cannot_make_the_env(service: Service, tmp_path: Path):
    service.start_worker("worker")  # its PYTHONPATH lacks tests/, where custom_envs lives
    here = {**service.env, "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), service.env.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "worker.cli", "run", "--via-server", service.url, "--token", ADMIN_TOKEN,
         "--env", "custom_envs:Walk", "--labels", "10", "--timesteps", "2048", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120, env=here, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("rlhf run: error: --env: the server's worker could not run it: cannot import env module")
    assert service.workers[0].poll() is None

"""Load test: simulated raters run lease → label loops against a real uvicorn, on SQLite and PostgreSQL.

    .venv/bin/python bench/api_load.py                      # every run below, then a table of them all
    .venv/bin/python bench/api_load.py --duration 30 --offered 150 --db sqlite postgres --client raw

One invocation runs, for each offered load (`--offered`, default 100, 200 and 0 = as fast as they can) and each
client (`--client`, default httpx and raw): the bare-app ceiling, SQLite and PostgreSQL, PostgreSQL once per
count of `--web-processes` (default 1 and 2), then prints a table of all the runs.

Prints p50/p99 latency of lease and label, labels per second and the CPU time per request of the server and
of the load generator, then counts in the database: lost labels (acknowledged but not stored), duplicates (a
pair or idempotency key stored twice) and pairs leased to two raters at once. The first run, "ceiling", sends
the same load to bench/bare_app.py (the two routes answering without any work): what the load generator
reaches on this machine against a server that costs nothing, the bound for the runs after it.

By default every rater runs its loop as fast as it can: that measures throughput, and by Little's law each
request then waits about raters / (requests per second), so p99 reflects the queue, not the service.
`--offered N` paces the raters to N labels/s together (one cycle per rater every raters / N seconds), which
measures latency at a given load. The first `--warmup` seconds (100 connections opening, token caches
filling) run but are not measured; their labels are audited with the rest.

`--client httpx` (the default) gives each rater its own httpx.AsyncClient, as each rater is their own
browser, on uvloop. Two things that made httpx itself the bottleneck are avoided: one AsyncClient shared by
100 connections (its pool bookkeeping), and httpcore without `sniffio` installed (a failing import on every
request). `--client raw` uses a minimal keep-alive HTTP/1.1 client on asyncio streams, one connection per
rater, to see how much of the cost is the load generator's.

`--web-processes 1 2` shows how throughput grows with uvicorn worker processes on PostgreSQL. On a 2-core
machine the load generator, PostgreSQL and the web processes share the two cores, so a second web process can
only take CPU from the others: the figure shows whether one web process was the bottleneck, not how a
deployment with cores of its own for the web tier would scale.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import ssl
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvloop
from sqlalchemy import create_engine, text

from app.live_server import FACTORY, ServerProcess

ADMIN_TOKEN = "bench-admin-token"
POSTGRES_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
BENCH = Path(__file__).resolve().parent


@dataclass
class Observed:
    lease_ms: list[float] = field(default_factory=list)
    label_ms: list[float] = field(default_factory=list)
    acknowledged: dict[int, tuple[int, int]] = field(default_factory=dict)  # label id → (pair, rater)
    leases: dict[int, set[int]] = field(default_factory=lambda: defaultdict(set))  # pair → raters holding it
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    window: tuple[float, float] = (0.0, 0.0)  # perf_counter span whose requests count (after the warm-up)
    labels_in_window: int = 0
    requests: int = 0  # all of them, warm-up included (for CPU per request)

    def counts(self, started: float) -> bool:
        return self.window[0] <= started < self.window[1]


class RawResponse:
    def __init__(self, status_code: int, body: bytes) -> None:
        self.status_code = status_code
        self.content = body

    def json(self) -> Any:
        return json.loads(self.content)


class RawClient:
    """One keep-alive HTTP/1.1 connection on asyncio streams: just enough for the lease/label loop."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: str, json: Any = None, headers: dict[str, str] | None = None) -> RawResponse:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        body = b"" if json is None else _dumps(json)
        lines = [f"POST {path} HTTP/1.1", f"Host: {self.host}", f"Content-Length: {len(body)}"]
        if json is not None:
            lines.append("Content-Type: application/json")
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        length = 0
        for line in header_lines:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return RawResponse(int(status_line.split()[1]), await reader.readexactly(length) if length else b"")

    async def aclose(self) -> None:
        if self._streams is not None:
            self._streams[1].close()


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def start_server(database_url: str | None, data_dir: Path, workers: int = 1) -> ServerProcess:
    """uvicorn with the app on `database_url`, or with bench/bare_app.py when it is None (not started yet)."""
    env = {
        **os.environ,
        "RLHF_DATABASE_URL": database_url or "",
        "RLHF_DATA_DIR": str(data_dir),
        "RLHF_ADMIN_TOKEN": ADMIN_TOKEN,
        "RLHF_LEASE_SECONDS": "600",  # longer than the run: any pair leased twice is a real double lease
        # finds bare_app, and keeps the caller's path (a profiling hook, say)
        "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH), os.environ.get("PYTHONPATH")])),
    }
    app = FACTORY if database_url else ("bare_app:app",)
    return ServerProcess(env, app=app, web_processes=workers, startup_timeout_s=30)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children so far (Linux /proc), including uvicorn workers."""
    total = 0.0
    for process in [pid, *_children(pid)]:
        fields = Path(f"/proc/{process}/stat").read_text().rpartition(")")[2].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def analyze(database_url: str) -> None:
    """Fresh planner statistics after seeding, as a long-running database has (autovacuum, or SQLite's
    `PRAGMA optimize`); without them PostgreSQL plans the lease query for empty tables."""
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text("ANALYZE"))
    engine.dispose()


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found += [int(child), *_children(int(child))]
    return found


def seed(base_url: str, raters: int, pairs: int) -> tuple[int, list[str]]:
    """One CartPole experiment, 200 segments, `pairs` random pairs, `raters` invited raters."""
    rng = np.random.default_rng(0)
    admin = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=120)
    experiment = admin.post(
        "/api/v1/experiments",
        json={"name": "load", "env_id": "CartPole-v1", "obs_shape": [4], "num_actions": 2},
    ).json()
    experiment_id = experiment["id"]
    segments = [
        {"obs": rng.normal(size=(50, 4)).round(3).tolist(), "actions": rng.integers(0, 2, 50).tolist()}
        for _ in range(200)
    ]
    response = admin.post(f"/api/v1/experiments/{experiment_id}/segments", json={"segments": segments})
    segment_ids = response.json()["segment_ids"]
    for start in range(0, pairs, 10_000):
        chosen = [rng.choice(segment_ids, size=2, replace=False) for _ in range(min(10_000, pairs - start))]
        body = {"pairs": [{"left_segment_id": int(a), "right_segment_id": int(b)} for a, b in chosen]}
        admin.post(f"/api/v1/experiments/{experiment_id}/pairs", json=body).raise_for_status()
    tokens = [
        admin.post("/api/v1/invites", json={"name": f"rater{i}", "experiment_ids": [experiment_id]}).json()["token"]
        for i in range(raters)
    ]
    admin.close()
    return experiment_id, tokens


async def rater_loop(
    client: httpx.AsyncClient | RawClient,
    experiment_id: int,
    token: str,
    rater: int,
    observed: Observed,
    cycle_seconds: float = 0.0,
) -> None:
    """Lease → label until the window ends; with `cycle_seconds`, start one cycle per period (a paced rater)."""
    headers = {"Authorization": f"Bearer {token}"}
    if cycle_seconds:
        # Raters do not all start at once.
        await asyncio.sleep(np.random.default_rng(rater).uniform(0, cycle_seconds))
    next_cycle = time.perf_counter()
    choices = ("left", "right", "equal", "skip")
    sequence = 0
    while time.perf_counter() < observed.window[1]:
        if cycle_seconds:
            next_cycle += cycle_seconds
        started = time.perf_counter()
        response = await client.post(f"/api/v1/experiments/{experiment_id}/leases", headers=headers)
        observed.requests += 1
        if observed.counts(started):
            observed.lease_ms.append((time.perf_counter() - started) * 1000)
        if response.status_code == 204:
            await asyncio.sleep(0.05)
            continue
        if response.status_code != 200:
            observed.errors[f"lease {response.status_code}"] += 1
            continue
        pair_id = response.json()["pair_id"]
        observed.leases[pair_id].add(rater)
        sequence += 1
        body = {
            "pair_id": pair_id,
            "choice": choices[sequence % 4],
            "response_time_ms": 1000 + sequence,
            "idempotency_key": f"r{rater}-{sequence}",
        }
        started = time.perf_counter()
        response = await client.post("/api/v1/labels", json=body, headers=headers)
        observed.requests += 1
        if observed.counts(started):
            observed.label_ms.append((time.perf_counter() - started) * 1000)
        if response.status_code == 201:
            observed.acknowledged[response.json()["id"]] = (pair_id, rater)  # warm-up labels are audited too
            observed.labels_in_window += observed.counts(started)
        else:
            observed.errors[f"label {response.status_code}"] += 1
        if cycle_seconds:
            await asyncio.sleep(max(0.0, next_cycle - time.perf_counter()))


async def run_load(
    base_url: str,
    experiment_id: int,
    tokens: list[str],
    duration: float,
    warmup: float,
    client_kind: str,
    cycle: float,
) -> Observed:
    clients: list[httpx.AsyncClient | RawClient]
    if client_kind == "raw":
        host, port = base_url.removeprefix("http://").split(":")
        clients = [RawClient(host, int(port)) for _ in tokens]
    else:
        # One client per rater, as each rater is their own browser; one client shared by 100 connections
        # makes httpcore's pool bookkeeping the bottleneck.
        tls = ssl.create_default_context()  # unused over http://, but each client would load its own CAs
        clients = [httpx.AsyncClient(base_url=base_url, timeout=60, verify=tls) for _ in tokens]
    observed = Observed()
    started = time.perf_counter()
    observed.window = (started + warmup, started + warmup + duration)
    await asyncio.gather(
        *(
            rater_loop(client, experiment_id, token, i, observed, cycle)
            for i, (client, token) in enumerate(zip(clients, tokens, strict=True))
        )
    )
    for client in clients:
        await client.aclose()
    return observed


def audit(database_url: str, observed: Observed) -> dict[str, int]:
    """Count in the database what the raters were told."""
    engine = create_engine(database_url)
    with engine.connect() as connection:
        stored_ids = {row[0] for row in connection.execute(text("SELECT id FROM labels"))}
        duplicate_pairs = connection.execute(
            text("SELECT count(*) FROM (SELECT pair_id FROM labels GROUP BY pair_id HAVING count(*) > 1) d")
        ).scalar_one()
        duplicate_keys = connection.execute(
            text(
                "SELECT count(*) FROM (SELECT rater_id, idempotency_key FROM labels "
                "GROUP BY rater_id, idempotency_key HAVING count(*) > 1) d"
            )
        ).scalar_one()
        miscounted = connection.execute(
            text(
                "SELECT count(*) FROM pairs p WHERE p.labels_count <> "
                "(SELECT count(*) FROM labels l WHERE l.pair_id = p.id)"
            )
        ).scalar_one()
    engine.dispose()
    return {
        "labels stored": len(stored_ids),
        "lost (acknowledged, not stored)": len(set(observed.acknowledged) - stored_ids),
        "stored but not acknowledged": len(stored_ids - set(observed.acknowledged)),
        "pairs with duplicate labels": duplicate_pairs,
        "duplicate idempotency keys": duplicate_keys,
        "pairs leased to two raters": sum(1 for raters in observed.leases.values() if len(raters) > 1),
        "pairs whose labels_count is wrong": miscounted,
    }


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def bench(
    kind: str,
    raters: int,
    duration: float,
    warmup: float,
    pairs: int,
    workers: int,
    client_kind: str,
    offered: float,
) -> dict[str, Any]:
    """One run; prints its figures and returns them for the summary."""
    cycle = raters / offered if offered else 0.0
    with tempfile.TemporaryDirectory() as folder:
        data_dir = Path(folder)
        admin_engine = None
        database_url: str | None = None  # "ceiling": the bare app, no database
        if kind == "sqlite":
            database_url = f"sqlite:///{data_dir / 'rlhf.sqlite'}"
        elif kind == "postgres":
            name = f"rlhf_bench_{uuid.uuid4().hex[:10]}"
            admin_engine = create_engine(f"{POSTGRES_SERVER}/postgres", isolation_level="AUTOCOMMIT")
            with admin_engine.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
            database_url = f"{POSTGRES_SERVER}/{name}"
            from app.migrate import upgrade_database
            from app.settings import Settings

            upgrade_database(Settings(database_url=database_url, data_dir=data_dir))
        with start_server(database_url, data_dir, workers) as server:
            base_url = server.url
            if database_url is None:
                experiment_id, tokens = 1, [f"rater{i}" for i in range(raters)]
            else:
                experiment_id, tokens = seed(base_url, raters, pairs)
                analyze(database_url)
            gc.collect()
            gc.freeze()  # the load generator keeps nothing from seeding for its collector to walk
            assert server.process is not None
            server_cpu, client_cpu = cpu_seconds(server.process.pid), time.process_time()
            observed = uvloop.run(run_load(base_url, experiment_id, tokens, duration, warmup, client_kind, cycle))
            server_cpu = cpu_seconds(server.process.pid) - server_cpu
            client_cpu = time.process_time() - client_cpu
        counts = {} if database_url is None else audit(database_url, observed)
        if admin_engine is not None:
            with admin_engine.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin_engine.dispose()
    lease, label = observed.lease_ms, observed.label_ms
    pace = f", offered {offered:.0f} labels/s" if offered else ", as fast as they can"
    print(
        f"\n== {kind}: {raters} raters ({client_kind} client{pace}), {workers} server process(es), "
        f"{duration:.0f} s measured after {warmup:.0f} s warm-up =="
    )
    for what, times in (("lease", lease), ("label", label)):
        p50, p99 = percentile(times, 50), percentile(times, 99)
        print(f"{what}  p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  ({len(times)} requests)")
    print(f"labels/s {observed.labels_in_window / duration:8.1f}")
    requests = max(observed.requests, 1)
    print(
        f"CPU per request: server {server_cpu / requests * 1000:.2f} ms, client {client_cpu / requests * 1000:.2f} ms"
    )
    print(f"errors   {dict(observed.errors) or 'none'}")
    for what, value in counts.items():
        print(f"{what:36s} {value}")
    return {
        "db": kind,
        "client": client_kind,
        "offered": offered,
        "web_processes": workers,
        "lease_p50": percentile(lease, 50),
        "lease_p99": percentile(lease, 99),
        "label_p50": percentile(label, 50),
        "label_p99": percentile(label, 99),
        "labels_per_s": observed.labels_in_window / duration,
        "server_cpu_ms": server_cpu / requests * 1000,
        "errors": sum(observed.errors.values()),
        "lost": counts.get("lost (acknowledged, not stored)", 0),
        "duplicated": counts.get("pairs with duplicate labels", 0) + counts.get("duplicate idempotency keys", 0),
        "double_leased": counts.get("pairs leased to two raters", 0),
    }


def print_summary(runs: list[dict[str, Any]]) -> None:
    """All runs of this invocation in one table (ms; CPU: server CPU time per request)."""
    print(f"\n== summary, load average at the end {os.getloadavg()[0]:.2f} ==")
    header = (
        "offered   client db        procs | lease p50   p99 | label p50   p99 | labels/s | CPU/req | "
        "errors lost dup double"
    )
    print(header)
    for run in runs:
        offered = f"{run['offered']:.0f}/s" if run["offered"] else "max"
        print(
            f"{offered:9s} {run['client']:6s} {run['db']:9s} {run['web_processes']:5d} | "
            f"{run['lease_p50']:9.1f} {run['lease_p99']:5.0f} | {run['label_p50']:9.1f} {run['label_p99']:5.0f} | "
            f"{run['labels_per_s']:8.1f} | {run['server_cpu_ms']:7.2f} | "
            f"{run['errors']:6d} {run['lost']:4d} {run['duplicated']:3d} {run['double_leased']:6d}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description="lease → label load test against a real uvicorn")
    parser.add_argument(
        "--db",
        nargs="+",
        choices=["ceiling", "sqlite", "postgres"],
        default=["ceiling", "sqlite", "postgres"],
        help="ceiling: the same load against bench/bare_app.py, routes that do no work",
    )
    parser.add_argument("--raters", type=int, default=100)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load per database")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring (connecting)")
    parser.add_argument("--pairs", type=int, default=40_000, help="pairs queued before the run")
    parser.add_argument(
        "--web-processes",
        type=int,
        nargs="+",
        default=[1, 2],
        help="uvicorn worker processes of the PostgreSQL runs, one run each (the others run one)",
    )
    parser.add_argument(
        "--offered",
        type=float,
        nargs="+",
        default=[100.0, 200.0, 0.0],
        help="labels/s all raters together aim for, one run each (0: each as fast as it can)",
    )
    parser.add_argument(
        "--client", choices=["httpx", "raw"], nargs="+", default=["httpx", "raw"], help="load generators (see above)"
    )
    args = parser.parse_args()
    runs = []
    for offered in args.offered:
        for client in args.client:
            for kind in args.db:
                for processes in args.web_processes if kind == "postgres" else [1]:
                    runs.append(
                        bench(kind, args.raters, args.duration, args.warmup, args.pairs, processes, client, offered)
                    )
    print_summary(runs)


if __name__ == "__main__":
    main()

"""PostgreSQL connections: pooled ones cut by a database restart are replaced, not handed to a request; a request
waiting for the database holds up no other; the hot path's statements are prepared, and their plans read no
table whole."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from helpers import ADMIN_TOKEN, build_world
from sqlalchemy import Connection, create_engine, text

import app.db
from app import crud
from app.driver import AsyncTransaction, Transaction
from app.main import create_app
from app.settings import Settings

pytestmark = pytest.mark.postgres


@contextmanager
def _serving(postgres_url: str, tmp_path: Path, **settings: Any) -> Iterator[TestClient]:
    """The app on `postgres_url` behind a TestClient with the admin token (its lifespan run); the engine is
    disposed afterwards."""
    application = create_app(
        Settings(database_url=postgres_url, data_dir=tmp_path, admin_token=ADMIN_TOKEN, **settings)
    )
    try:
        with TestClient(application, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
            yield client
    finally:
        application.state.engine.dispose()


@contextmanager
def _locking_connection(postgres_url: str) -> Iterator[Connection]:
    """A connection of its own, to hold row locks the app's requests then meet."""
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def _cut_connections(url: str) -> int:
    """What a database restart does to the web process's pooled connections."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        cut = connection.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
    engine.dispose()
    return cut


@pytest.mark.parametrize("idle_ping_seconds, survives", [(0.0, True), (3600.0, False)])
def test_idle_connection_cut_by_the_database_is_replaced(
    postgres_url: str, tmp_path, monkeypatch: pytest.MonkeyPatch, idle_ping_seconds: float, survives: bool
) -> None:
    """Pinged after idling (here: at once), a dead connection is swapped for a fresh one and the request
    succeeds; never pinged (the control), the same cut fails that one request with a 503 that says to retry,
    and the next one gets a fresh connection."""
    monkeypatch.setattr(app.db, "IDLE_PING_SECONDS", idle_ping_seconds)
    with _serving(postgres_url, tmp_path) as client:
        assert client.get("/api/v1/experiments").status_code == 200  # leaves a connection in the pool
        assert _cut_connections(postgres_url) >= 1
        response = client.get("/api/v1/experiments")
        if survives:
            assert response.status_code == 200, response.text
        else:
            assert response.status_code == 503
            assert response.json()["detail"] == "database: connection lost, please retry"
            assert client.get("/api/v1/experiments").status_code == 200


def test_a_hot_path_connection_cut_by_the_database_is_replaced(
    postgres_url: str, tmp_path, rng: np.random.Generator
) -> None:
    """The lease and label paths' own asynchronous connections (app.driver.AsyncPool) need no ping: cut while
    idle, the one connection is seen closed and replaced, and the next lease succeeds."""
    with _serving(postgres_url, tmp_path, db_pool_size=1) as client:
        world = build_world(client, rng, pairs=4, raters=1, name="cut")
        url = f"/api/v1/experiments/{world.experiment_id}/leases"
        for _ in range(3):
            assert client.post(url, headers=world.rater_headers()).status_code in (200, 204)
            assert _cut_connections(postgres_url) >= 1
            time.sleep(0.2)  # the backend exits after pg_terminate_backend returns


def test_a_request_waiting_for_postgres_holds_up_no_other_request(
    postgres_url: str, tmp_path, rng: np.random.Generator
) -> None:
    """A lease waits for a row lock another connection holds; meanwhile /healthz and another rater's lease
    answer: the lease waits on its own asynchronous connection, not on the event loop."""
    with _serving(postgres_url, tmp_path) as client:
        world = build_world(client, rng, pairs=3, raters=2, name="waiting")
        url = f"/api/v1/experiments/{world.experiment_id}/leases"
        for rater in (0, 1):  # the token and invitation caches know both raters now
            lease = client.post(url, headers=world.rater_headers(rater))
            assert lease.status_code == 200, lease.text
        answers: dict[str, int] = {}

        with _locking_connection(postgres_url) as blocker:
            blocker.execute(text("SELECT id FROM raters WHERE id = :id FOR UPDATE"), {"id": world.rater_ids[0]})
            stuck = _ask_in_thread(client, answers, "stuck", "POST", url, world.rater_headers(0))
            _wait_for_a_lock_wait(postgres_url)
            others = [
                _ask_in_thread(client, answers, "health", "GET", "/healthz", {}),
                _ask_in_thread(client, answers, "other", "POST", url, world.rater_headers(1)),
            ]
            for thread in others:
                thread.join(timeout=10)
            answered_while_stuck = dict(answers)
            blocker.rollback()
        stuck.join(timeout=10)
        assert answered_while_stuck == {"health": 200, "other": 200}
        assert answers["stuck"] == 200


def test_a_lease_does_not_wait_for_its_raters_label_insert(
    postgres_url: str, tmp_path, rng: np.random.Generator
) -> None:
    """A label insert's foreign-key check holds FOR KEY SHARE on the rater's row until it commits; the lease's lock
    on that row (FOR NO KEY UPDATE) does not wait for it. A plain FOR UPDATE did, and a label that waited for the
    pair a lease held deadlocked with it."""
    with _serving(postgres_url, tmp_path) as client:
        world = build_world(client, rng, pairs=3, raters=1, name="key-share")
        url = f"/api/v1/experiments/{world.experiment_id}/leases"
        with _locking_connection(postgres_url) as blocker:
            blocker.execute(text("SELECT id FROM raters WHERE id = :id FOR KEY SHARE"), {"id": world.rater_ids[0]})
            answers: dict[str, int] = {}
            thread = _ask_in_thread(client, answers, "lease", "POST", url, world.rater_headers())
            thread.join(timeout=10)
            answered_while_held = dict(answers)
            blocker.rollback()
        thread.join(timeout=10)
        assert answered_while_held == {"lease": 200}


def _ask_in_thread(
    client: TestClient, answers: dict[str, int], name: str, method: str, path: str, headers: dict[str, str]
) -> threading.Thread:
    """Send a request from a thread of its own; its status lands in `answers[name]` once it is answered."""

    def call() -> None:
        answers[name] = client.request(method, path, headers=headers).status_code

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread


def _wait_for_a_lock_wait(url: str) -> None:
    # Autocommit: every look is a transaction of its own, and sees pg_stat_activity anew.
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    query = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    try:
        with engine.connect() as connection:
            for _ in range(200):
                if connection.execute(text(query)).scalar_one():
                    return
                time.sleep(0.05)
    finally:
        engine.dispose()
    raise AssertionError("no request waits for the lock")


def _label_leased_pairs(client: TestClient, world: Any, count: int) -> None:
    """The rater leases a pair and labels it, `count` times, through the hot paths."""
    for _ in range(count):
        lease = client.post(f"/api/v1/experiments/{world.experiment_id}/leases", headers=world.rater_headers())
        body = {"pair_id": lease.json()["pair_id"], "choice": "left"}
        assert client.post("/api/v1/labels", json=body, headers=world.rater_headers()).status_code == 201


def _on_hot_path_pool(client: TestClient, function: Any) -> Any:
    """`function(transaction)` on the hot paths' pool, in the loop that serves the client's requests."""
    assert client.portal is not None
    return client.portal.call(client.app.state.database.read, function)  # type: ignore[attr-defined]


async def _prepared_statements(transaction: Transaction) -> list[str]:
    rows = await transaction.execute("SELECT statement FROM pg_prepared_statements", ())
    return [statement for (statement,) in rows]


def test_the_lease_and_label_statements_are_prepared(postgres_url: str, tmp_path, rng: np.random.Generator) -> None:
    """The hot paths' statements are prepared on their connection (asyncpg prepares and caches each one)."""
    with _serving(postgres_url, tmp_path, db_pool_size=1) as client:
        world = build_world(client, rng, pairs=8, raters=1, name="prepared")
        _label_leased_pairs(client, world, 8)
        prepared = _on_hot_path_pool(client, _prepared_statements)  # its one connection
    assert any("SKIP LOCKED" in statement for statement in prepared)  # the lease's pick
    assert any("INSERT INTO labels" in statement for statement in prepared)  # the label's store


async def _hot_path_plans(transaction: Transaction) -> dict[str, str]:
    """Each statement prepared on this connection, with the plan it is run by (a generic plan: see
    app.driver.POSTGRES_SETTINGS), re-made here under the connection's settings and the current statistics."""
    plans = {}
    for statement in await _prepared_statements(transaction):
        parameters = max((int(number) for number in re.findall(r"\$(\d+)", statement)), default=0)
        if not parameters:  # not a hot path's (pg_prepared_statements, asked above)
            continue
        await transaction.execute(f"PREPARE probe AS {statement}", ())
        rows = await transaction.execute(f"EXPLAIN EXECUTE probe({', '.join(['NULL'] * parameters)})", ())
        await transaction.execute("DEALLOCATE probe", ())
        plans[statement] = "\n".join(line for (line,) in rows)
    return plans


def test_the_hot_paths_plans_made_on_empty_tables_scan_no_table_whole(
    postgres_url: str, tmp_path: Path, rng: np.random.Generator
) -> None:
    """A new deployment's statistics say the labels and leases tables are empty, and the leases table stays small in
    live rows while its dead ones pile up until vacuum: the plans the hot paths keep for a connection's life must
    find their rows by index all the same, never by reading the whole table."""
    with _serving(postgres_url, tmp_path, db_pool_size=1) as client:
        world = build_world(client, rng, pairs=8, raters=1, name="plans")
        with _locking_connection(postgres_url) as connection:
            connection.execute(text("ANALYZE"))  # labels and leases empty, as when a deployment starts
            connection.commit()
        _label_leased_pairs(client, world, 3)
        plans = _on_hot_path_pool(client, _hot_path_plans)
    assert any("SKIP LOCKED" in statement for statement in plans)  # the lease's pick is among them
    scanned = {statement: plan for statement, plan in plans.items() if "Seq Scan" in plan}
    assert scanned == {}


async def _commit_mode(transaction: Transaction) -> str:
    rows = await transaction.execute("SHOW synchronous_commit", ())
    return str(rows[0][0])


async def _lease_and_its_commit_mode(transaction: Transaction, experiment_id: int, rater_id: int) -> tuple[Any, str]:
    info = await crud.lease_in(transaction, experiment_id=experiment_id, rater_id=rater_id, lease_seconds=60)
    return info, await _commit_mode(transaction)


def test_a_lease_commits_without_waiting_for_its_wal_flush_and_nothing_after_it_does(
    postgres_url: str, tmp_path: Path, rng: np.random.Generator
) -> None:
    """A lease is a claim that expires anyway: its transaction commits asynchronously (no WAL flush to wait
    for). The setting is the transaction's own: on the same connection, the label after it commits durably."""
    with _serving(postgres_url, tmp_path, db_pool_size=1) as client:
        world = build_world(client, rng, pairs=2, raters=1, name="commit-mode")
        database = client.app.state.database  # type: ignore[attr-defined]
        assert client.portal is not None
        info, in_lease = client.portal.call(
            database.transact, _lease_and_its_commit_mode, world.experiment_id, world.rater_ids[0]
        )
        after_lease = _on_hot_path_pool(client, _commit_mode)  # the pool's one connection, as the label's
        body = {"pair_id": info.pair_id, "choice": "left"}
        assert client.post("/api/v1/labels", json=body, headers=world.rater_headers()).status_code == 201
    assert (in_lease, after_lease) == ("off", "on")


def test_a_label_on_a_live_lease_is_one_statement(
    postgres_url: str, tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each statement on PostgreSQL is a round trip: the usual label (a live lease, a new key) claims the lease and
    stores the label in one; a replay of its key takes the checks' statements as well and stores nothing new."""
    statements: list[str] = []
    execute = AsyncTransaction.execute

    async def counted(self: AsyncTransaction, sql: str, params: Any) -> list[Any]:
        statements.append(sql)
        return await execute(self, sql, params)

    with _serving(postgres_url, tmp_path) as client:
        world = build_world(client, rng, pairs=2, raters=1, name="one-statement")
        lease = client.post(f"/api/v1/experiments/{world.experiment_id}/leases", headers=world.rater_headers())
        body = {"pair_id": lease.json()["pair_id"], "choice": "left", "idempotency_key": "k1"}
        monkeypatch.setattr(AsyncTransaction, "execute", counted)
        first = client.post("/api/v1/labels", json=body, headers=world.rater_headers())
        stored_with = len(statements)
        replay = client.post("/api/v1/labels", json=body, headers=world.rater_headers())
    assert first.status_code == replay.status_code == 201
    assert first.json() == replay.json()
    assert stored_with == 1
    assert len(statements) > 2  # the replay: the claim found no lease, then the checks and the stored label

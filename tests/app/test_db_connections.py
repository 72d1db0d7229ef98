"""Pooled PostgreSQL connections cut by a database restart are replaced, not handed to a request."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from helpers import ADMIN_TOKEN
from sqlalchemy import create_engine, text

import app.db
from app.main import create_app
from app.settings import Settings

pytestmark = pytest.mark.postgres


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
    settings = Settings(database_url=postgres_url, data_dir=tmp_path, admin_token=ADMIN_TOKEN)
    application = create_app(settings)
    try:
        with TestClient(application, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
            assert client.get("/api/v1/experiments").status_code == 200  # leaves a connection in the pool
            assert _cut_connections(postgres_url) >= 1
            response = client.get("/api/v1/experiments")
            if survives:
                assert response.status_code == 200, response.text
            else:
                assert response.status_code == 503
                assert response.json()["detail"] == "database: connection lost, please retry"
                assert client.get("/api/v1/experiments").status_code == 200
    finally:
        application.state.engine.dispose()

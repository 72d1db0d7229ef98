"""Fixtures for the data service: every database test runs on a fresh SQLite file and on real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from app.main import create_app
from app.migrate import upgrade_database
from app.models import Base
from app.settings import Settings

ADMIN_TOKEN = "test-admin-token"
POSTGRES_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"


def create_postgres_database(prefix: str = "rlhf_test") -> str:
    """CREATE DATABASE with a unique name; returns its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    engine = create_engine(f"{POSTGRES_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return f"{POSTGRES_SERVER}/{name}"


def drop_postgres_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    engine = create_engine(f"{POSTGRES_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """One fresh, migrated PostgreSQL database for the test session, dropped at the end."""
    url = create_postgres_database()
    upgrade_database(Settings(database_url=url))
    yield url
    drop_postgres_database(url)


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    """An empty PostgreSQL database of its own (no migrations applied), dropped afterwards."""
    url = create_postgres_database("rlhf_fresh")
    yield url
    drop_postgres_database(url)


def _truncate_all(url: str) -> None:
    engine = create_engine(url)
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


DATABASES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(params=DATABASES)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings for a fresh database of each kind (SQLite file in tmp_path, or emptied PostgreSQL)."""
    data_dir = tmp_path / "data"
    if request.param == "sqlite":
        return Settings(data_dir=data_dir, admin_token=ADMIN_TOKEN, lease_seconds=60)
    url = request.getfixturevalue("postgres_url")
    _truncate_all(url)
    return Settings(database_url=url, data_dir=data_dir, admin_token=ADMIN_TOKEN, lease_seconds=60)


@pytest.fixture
def app(settings: Settings) -> Iterator[FastAPI]:
    application = create_app(settings)
    yield application
    application.state.engine.dispose()


@pytest.fixture
def session_factory(app: FastAPI) -> sessionmaker[Session]:
    return app.state.session_factory


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """TestClient with the admin token."""
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as test_client:
        yield test_client


@pytest.fixture
def anonymous(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


CARTPOLE = {
    "name": "cartpole",
    "env_id": "CartPole-v1",
    "obs_shape": [4],
    "action_shape": [],
    "action_dtype": "int64",
    "num_actions": 2,
    "instructions": "Prefer the pole upright.",
}


def segment_json(rng: np.random.Generator, length: int = 5, **extra: object) -> dict:
    return {
        "obs": rng.normal(size=(length, 4)).round(4).tolist(),
        "actions": rng.integers(0, 2, size=length).tolist(),
        "true_rewards": [1.0] * length,
        "ended": [False] * length,
        **extra,
    }


@dataclass
class World:
    """An experiment with segments, pairs and invited raters, made through the API."""

    experiment_id: int
    segment_ids: list[int]
    pair_ids: list[int]
    rater_tokens: list[str]
    rater_ids: list[int]

    def rater_headers(self, index: int = 0) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.rater_tokens[index]}"}


def build_world(
    client: TestClient,
    rng: np.random.Generator,
    pairs: int = 3,
    raters: int = 2,
    labels_per_pair: int = 1,
    name: str = "cartpole",
) -> World:
    response = client.post(
        "/api/v1/experiments", json={**CARTPOLE, "name": name, "labels_per_pair": labels_per_pair}
    )
    assert response.status_code == 201, response.text
    experiment_id = response.json()["id"]
    segments = [segment_json(rng) for _ in range(pairs * 2)]
    response = client.post(f"/api/v1/experiments/{experiment_id}/segments", json={"segments": segments})
    assert response.status_code == 201, response.text
    segment_ids = response.json()["segment_ids"]
    body = {
        "pairs": [
            {"left_segment_id": a, "right_segment_id": b}
            for a, b in zip(segment_ids[::2], segment_ids[1::2], strict=True)
        ]
    }
    response = client.post(f"/api/v1/experiments/{experiment_id}/pairs", json=body)
    assert response.status_code == 201, response.text
    invites = [
        client.post("/api/v1/invites", json={"name": f"rater{i}", "experiment_ids": [experiment_id]}).json()
        for i in range(raters)
    ]
    return World(
        experiment_id=experiment_id,
        segment_ids=segment_ids,
        pair_ids=response.json()["pair_ids"],
        rater_tokens=[invite["token"] for invite in invites],
        rater_ids=[invite["rater_id"] for invite in invites],
    )


@pytest.fixture
def world(client: TestClient, rng: np.random.Generator) -> World:
    return build_world(client, rng)

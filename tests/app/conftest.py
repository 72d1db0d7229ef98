"""Fixtures for the data service: every database test runs on a fresh SQLite file and on real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from helpers import ADMIN_TOKEN, World, build_world
from postgres_databases import create_postgres_database, drop_postgres_database
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from app.main import create_app
from app.migrate import upgrade_database
from app.models import Base
from app.settings import Settings


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
def world(client: TestClient, rng: np.random.Generator) -> World:
    return build_world(client, rng)

"""Fresh PostgreSQL databases on the server at 127.0.0.1:5432, for tests in any folder (pytest puts tests/ on
the import path, see pyproject.toml)."""

from __future__ import annotations

import uuid

from sqlalchemy import create_engine, text

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

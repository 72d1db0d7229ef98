"""The migrations build exactly the models' schema, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError

from app.db import make_engine
from app.migrate import upgrade_database
from app.models import Base
from app.settings import Settings


def _assert_matches_models(settings: Settings) -> None:
    upgrade_database(settings)
    engine = make_engine(settings)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, Base.metadata)
            tables = set(inspect(connection).get_table_names())
    finally:
        engine.dispose()
    assert differences == []
    assert {table.name for table in Base.metadata.sorted_tables} <= tables
    assert "alembic_version" in tables


def test_migrations_match_models_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the migrations folder is found from any working directory
    settings = Settings(data_dir=tmp_path / "fresh")
    _assert_matches_models(settings)
    assert (tmp_path / "fresh" / "rlhf.sqlite").is_file()
    upgrade_database(settings)  # a second upgrade is a no-op


@pytest.mark.postgres
def test_migrations_match_models_postgres(tmp_path: Path, fresh_postgres_url: str) -> None:
    _assert_matches_models(Settings(database_url=fresh_postgres_url, data_dir=tmp_path))


def test_sqlite_pragmas(tmp_path: Path) -> None:
    engine = make_engine(Settings(data_dir=tmp_path))
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000
    finally:
        engine.dispose()


def _experiment_fails_after_upgrade(settings: Settings) -> None:
    """An experiment stored under 0001 survives 0002, which lets it fail with an error; the CHECK still holds."""
    upgrade_database(settings, "0001")
    engine = make_engine(settings)
    insert = (
        "INSERT INTO experiments (name, env_id, teacher_mode, status, instructions, labels_per_pair, obs_shape, "
        "obs_dtype, action_shape, action_dtype, config, created_at, updated_at) VALUES ('old', 'CartPole-v1', "
        "'human', 'running', '', 1, '[4]', 'float32', '[]', 'int64', '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
    )
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(insert)
        upgrade_database(settings)
        with engine.begin() as connection:
            failed = "UPDATE experiments SET status = 'failed', error = 'no module' WHERE name = 'old'"
            connection.exec_driver_sql(failed)
            row = connection.exec_driver_sql("SELECT status, error FROM experiments WHERE name = 'old'").one()
        assert tuple(row) == ("failed", "no module")
        with pytest.raises(IntegrityError), engine.begin() as connection:
            connection.exec_driver_sql("UPDATE experiments SET status = 'lost' WHERE name = 'old'")
    finally:
        engine.dispose()


def test_an_old_experiment_can_fail_after_the_upgrade_sqlite(tmp_path: Path) -> None:
    _experiment_fails_after_upgrade(Settings(data_dir=tmp_path))


@pytest.mark.postgres
def test_an_old_experiment_can_fail_after_the_upgrade_postgres(tmp_path: Path, fresh_postgres_url: str) -> None:
    _experiment_fails_after_upgrade(Settings(database_url=fresh_postgres_url, data_dir=tmp_path))

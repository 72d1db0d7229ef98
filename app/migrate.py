"""Alembic, configured in code so `rlhf db upgrade` and the server find the migrations from any folder."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from app.settings import Settings

# The repository's migrations/ folder; found through this file because we install editable (pip install -e .).
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(settings: Settings, engine: Engine | None = None) -> Config:
    """An Alembic Config for `settings`; with `engine`, migrations run on that engine's connections."""
    if not (MIGRATIONS_DIR / "env.py").is_file():
        raise RuntimeError(
            f"Alembic migrations not found at {MIGRATIONS_DIR}; install with `pip install -e .`"
        )
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation would choke on '%' in passwords.
    config.set_main_option("sqlalchemy.url", settings.resolved_database_url.replace("%", "%%"))
    config.attributes["settings"] = settings
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def upgrade_database(settings: Settings, revision: str = "head") -> None:
    """Apply all migrations to the database `settings` names (creating the SQLite data folder if needed)."""
    from app.db import make_engine  # late import keeps this module light for the CLI

    engine = make_engine(settings)
    try:
        command.upgrade(alembic_config(settings, engine), revision)
    finally:
        engine.dispose()

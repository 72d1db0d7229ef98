"""Deployment settings, read from `RLHF_*` environment variables (training hyperparameters live elsewhere)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where the data lives, who may change it and how much a request may carry."""

    model_config = SettingsConfigDict(env_prefix="RLHF_", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL (postgresql+psycopg://user@host/db); default a SQLite file in data_dir.",
    )
    data_dir: Path = Field(default=Path("./rlhf-data"), description="Folder for the SQLite file and clips.")
    admin_token: SecretStr | None = Field(
        default=None,
        description="Admin bearer token; generated, stored hashed and printed at first start if unset.",
    )
    max_body_bytes: int = Field(default=16 * 1024 * 1024, gt=0, description="Larger request bodies get 413.")
    lease_seconds: float = Field(default=120.0, gt=0, description="How long a rater holds a leased pair.")
    max_leases_per_rater: int = Field(
        default=3,
        ge=1,
        description="Pairs one rater may hold at once in an experiment (the labeling page shows one, loads two).",
    )
    sqlite_busy_timeout_ms: int = Field(default=10_000, ge=0)
    db_pool_size: int = Field(default=20, ge=1, description="Connections kept open per process.")
    public_url: str = Field(
        default="", description="Base URL put in invite links; relative links when empty."
    )
    auto_migrate_sqlite: bool = Field(
        default=True, description="Upgrade an embedded SQLite database at start."
    )

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("sqlite", "postgresql")):
            raise ValueError("RLHF_DATABASE_URL must be a sqlite:// or postgresql+psycopg:// URL")
        return url

    @property
    def resolved_database_url(self) -> str:
        """The URL in use: the configured one, or the SQLite file in the data folder."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'rlhf.sqlite').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @property
    def clip_dir(self) -> Path:
        return self.data_dir / "clips"

    @property
    def upload_dir(self) -> Path:
        """Frames clients sent, waiting for the worker to encode them."""
        return self.data_dir / "uploads"

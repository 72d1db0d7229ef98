"""Deployment settings, read from `RLHF_*` environment variables (training hyperparameters live elsewhere)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# 16 random URL-safe characters are 96 bits; generated tokens have 43.
MIN_ADMIN_TOKEN_LENGTH = 16


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
    auth_failures_per_minute: int = Field(
        default=30, ge=1, description="Failed sign-ins per client address a minute; beyond, the address gets 429."
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
    forwarded_allow_ips: str = Field(
        default="",
        description=(
            "Proxies trusted for X-Forwarded-Proto and X-Forwarded-For, as comma-separated addresses or networks "
            "(172.16.0.0/12), or *; none when empty. Behind a TLS proxy the cookies are Secure only with it."
        ),
    )
    auto_migrate_sqlite: bool = Field(
        default=True, description="Upgrade an embedded SQLite database at start."
    )

    @field_validator("admin_token")
    @classmethod
    def _check_admin_token(cls, token: SecretStr | None) -> SecretStr | None:
        length = len(token.get_secret_value()) if token is not None else 0
        if 0 < length < MIN_ADMIN_TOKEN_LENGTH:
            raise ValueError(
                f"RLHF_ADMIN_TOKEN has {length} characters; at least {MIN_ADMIN_TOKEN_LENGTH} are required, since a "
                "short token can be guessed. Generate one with: "
                "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return token

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

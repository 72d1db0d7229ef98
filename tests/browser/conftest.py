"""Fixtures for browser tests: a real uvicorn serving a fresh SQLite data folder, and headless Chromium.

Chromium comes from Debian (`apt-get install -y chromium chromium-driver`); Playwright only drives it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app.live_server import ServerProcess

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ADMIN_TOKEN = "browser-test-admin-token"
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class LiveServer:
    """A running `uvicorn app.main:create_app_from_env` and how to reach it."""

    base_url: str
    data_dir: Path
    admin_token: str = ADMIN_TOKEN

    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {self.admin_token}"}, timeout=30.0
        )


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """uvicorn in a subprocess on a free 127.0.0.1 port, with its own SQLite data folder."""
    data_dir = tmp_path_factory.mktemp("browser") / "data"
    env = {
        **os.environ,
        "RLHF_DATA_DIR": str(data_dir),
        "RLHF_ADMIN_TOKEN": ADMIN_TOKEN,
        "RLHF_LEASE_SECONDS": "300",
    }
    env.pop("RLHF_DATABASE_URL", None)  # SQLite in data_dir
    with ServerProcess(env) as server:
        yield LiveServer(base_url=server.url, data_dir=data_dir)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian's headless Chromium driven by Playwright."""
    if not CHROMIUM.exists():
        # CI installs it (`make browser`), so there a missing browser is a failure, not a skip.
        missing = pytest.fail if os.environ.get("CI") else pytest.skip
        missing("needs /usr/bin/chromium: apt-get install -y chromium chromium-driver")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def output_dir() -> Path:
    """Screenshots go here: $RLHF_SCREENSHOT_DIR, else test-output/browser (git-ignored)."""
    path = Path(os.environ.get("RLHF_SCREENSHOT_DIR") or REPO_ROOT / "test-output" / "browser")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def page_errors() -> list[str]:
    """Uncaught errors and console errors of the pages a test opens (it asserts there are none)."""
    return []

"""Fixtures for browser tests: a real uvicorn serving a fresh SQLite data folder, and headless Chromium.

Chromium comes from Debian (`apt-get install -y chromium chromium-driver`); Playwright only drives it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_healthy(base_url: str, process: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"uvicorn exited with code {process.returncode}")
        try:
            response = httpx.get(f"{base_url}/healthz", timeout=2.0)
        except httpx.TransportError:
            time.sleep(0.1)
            continue
        if response.status_code != 200:
            raise RuntimeError(f"{base_url}/healthz answered {response.status_code}: {response.text}")
        return
        time.sleep(0.1)
    raise RuntimeError(f"uvicorn did not answer {base_url}/health within {timeout_s} s")


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
    for _attempt in range(3):  # the free port can be taken between choosing and binding it
        port = _free_port()
        base_url = f"http://127.0.0.1:{port}"
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "app.main:create_app_from_env",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            cwd=REPO_ROOT,
            env=env,
        )  # fmt: skip
        try:
            _wait_until_healthy(base_url, process)
            break
        except RuntimeError:
            process.kill()
            process.wait()
    else:
        raise RuntimeError("could not start uvicorn")
    try:
        yield LiveServer(base_url=base_url, data_dir=data_dir)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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
    """Screenshots go here (git-ignored)."""
    path = REPO_ROOT / "test-output" / "browser"
    path.mkdir(parents=True, exist_ok=True)
    return path

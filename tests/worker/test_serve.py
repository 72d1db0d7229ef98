"""`rlhf serve` as a user starts it: a real process with its worker, on a fresh data folder."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest

from app.live_server import free_port

pytestmark = pytest.mark.process  # `rlhf serve` and its worker

STARTUP_SECONDS = 60.0
STOP_SECONDS = 90.0  # the worker finishes its current step and checkpoints first


def children(pid: int) -> list[int]:
    """Pids whose parent is `pid`, from /proc/<pid>/stat (the field after the command name's ')')."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def wait_until(condition, seconds: float, what: str) -> None:  # noqa: ANN001 - a no-argument callable
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")
        time.sleep(0.1)


class Serve:
    """A running `rlhf serve` whose stdout lines are read by a thread into a queue."""

    def __init__(self, process: subprocess.Popen[str], stderr: Path) -> None:
        self.process = process
        self.stderr = stderr
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.worker_pids: set[int] = set()  # killed at the end if still there, even when orphaned
        assert process.stdout is not None
        self.reader = threading.Thread(target=self._read, args=(process.stdout,), daemon=True)
        self.reader.start()

    def _read(self, stdout: IO[str]) -> None:
        with stdout:  # closed at the end of output: once the server and its worker are gone
            for line in stdout:
                self.lines.put(line)

    def read_until(self, pattern: str, seconds: float) -> re.Match[str]:
        """The first stdout line (from the start) matching `pattern`, waiting up to `seconds` for it."""
        deadline = time.monotonic() + seconds
        while True:
            for line in self.seen:
                if match := re.search(pattern, line):
                    return match
            try:
                self.seen.append(self.lines.get(timeout=max(0.0, min(1.0, deadline - time.monotonic()))))
            except queue.Empty:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise AssertionError(
                        f"no line matching {pattern!r} (exit code {self.process.poll()}); stdout: {self.seen}; "
                        f"stderr: {self.stderr.read_text()[-3000:]}"
                    ) from None


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    port = free_port()
    # No RLHF_* settings from outside (a fresh SQLite database, a generated admin token); no PYTHONUNBUFFERED:
    # the command must flush its lines itself, as it must when its output goes to a log file.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLHF_") and k != "PYTHONUNBUFFERED"}
    env.update(RLHF_DATA_DIR=str(tmp_path / "data"), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    stderr = tmp_path / "serve.stderr"
    with stderr.open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "serve", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    running = Serve(process, stderr)
    try:
        yield running
    finally:
        # Whatever the test did, leave no process behind: the server's children first, then the server.
        for pid in running.worker_pids | set(children(process.pid)):
            try:
                if "worker.cli" in Path(f"/proc/{pid}/cmdline").read_text():
                    os.kill(pid, signal.SIGKILL)
            except (OSError, ProcessLookupError):  # already gone
                pass
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        running.reader.join(timeout=30)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_prints_links_serves_the_demo_and_stops_with_its_worker(serve: Serve, stop_signal: int) -> None:
    base = serve.read_until(r"pages at (http://\S+?)/? ", STARTUP_SECONDS)[1]
    admin_token = serve.read_until(r"admin token \(shown once, store it\): (\S+)", 5)[1]
    invite_url = serve.read_until(r"rater invite link for the demo experiment: (http://\S+)", 5)[1]
    assert invite_url.startswith(f"{base}/invite/")

    wait_until(lambda: len(children(serve.process.pid)) > 0, 10, "the worker process")
    (worker_pid,) = children(serve.process.pid)
    serve.worker_pids.add(worker_pid)

    with httpx.Client(base_url=base, timeout=10) as client:

        def healthy() -> bool:
            try:
                return client.get("/healthz").status_code == 200
            except httpx.TransportError:  # uvicorn prints its links before it listens
                return False

        wait_until(healthy, STARTUP_SECONDS, "GET /healthz")
        assert client.get("/healthz").json()["status"] == "ok"
        experiments = client.get("/api/v1/experiments", headers={"Authorization": f"Bearer {admin_token}"})
        assert experiments.status_code == 200
        (demo,) = experiments.json()
        assert (demo["name"], demo["env_id"], demo["teacher_mode"]) == ("cartpole-demo", "CartPole-v1", "mixed")
        invite = client.get(invite_url.removeprefix(base))
        assert invite.status_code == 200

    serve.process.send_signal(stop_signal)
    assert serve.process.wait(timeout=STOP_SECONDS) == 0
    serve.read_until(r"rlhf: stopped", 5)
    wait_until(lambda: not alive(worker_pid), 10, f"the worker (pid {worker_pid}) to be gone")

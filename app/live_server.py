"""The web app served by uvicorn in a subprocess on a local port, for tests, benchmarks and scripts.

`ServerProcess` starts `uvicorn --factory app.main:create_app_from_env` (or another app) with a given
environment (the `RLHF_*` settings) and number of web processes, returns once `GET /healthz` answers 200, and
stops it with SIGTERM, then SIGKILL. Only the standard library and httpx are imported here.

    with ServerProcess({**os.environ, "RLHF_DATA_DIR": "/tmp/data"}) as server:
        httpx.get(f"{server.url}/healthz")
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx

HOST = "127.0.0.1"
FACTORY = ("--factory", "app.main:create_app_from_env")
# Run from the checkout holding this package, so that `python -m uvicorn` imports this code and no other copy.
REPO_ROOT = Path(__file__).resolve().parents[1]
PORT_ATTEMPTS = 3  # a free port can be taken by someone else between choosing and binding it


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class ServerProcess:
    """uvicorn in a subprocess on `HOST`; a context manager that starts it and stops it.

    Args:
        env: the server's whole environment (default: this process's).
        app: uvicorn's app arguments (default: the rlhf-loop app built from `RLHF_*` environment settings).
        web_processes: uvicorn `--workers`.
        port: the port to listen on (default: a free one, chosen again if it is taken before uvicorn binds it).
        log: file that receives the server's stdout and stderr, appended to across restarts (default: a
            temporary file, removed when the server ends).
        startup_timeout_s: how long `start` waits for `/healthz`.
        cwd: the server's working folder (default: the checkout holding this package).
    """

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        app: Sequence[str] = FACTORY,
        web_processes: int = 1,
        port: int | None = None,
        log: Path | None = None,
        startup_timeout_s: float = 60.0,
        cwd: Path = REPO_ROOT,
    ) -> None:
        self.env = dict(os.environ if env is None else env)
        self.app = list(app)
        self.web_processes = web_processes
        self._port_given = port is not None
        self.port = port if port is not None else free_port()
        self.log = log
        self.startup_timeout_s = startup_timeout_s
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        """Start uvicorn (again, on the same port, after `stop` or `kill`) and wait until /healthz answers 200.

        Raises:
            RuntimeError: uvicorn exited or did not answer in time; the message carries the end of its output.
        """
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError(f"the server on {self.url} is running already")
        for attempt in range(PORT_ATTEMPTS):
            self._spawn()
            try:
                self._wait_until_healthy()
                return
            except RuntimeError:
                taken = "address already in use" in self.output().lower()  # uvicorn's words for EADDRINUSE
                self._end(kill=True)
                if not taken or self._port_given or attempt == PORT_ATTEMPTS - 1:
                    raise
                self.port = free_port()

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM, and SIGKILL if uvicorn has not exited after `timeout_s`."""
        self._end(kill=False, timeout_s=timeout_s)

    def kill(self) -> None:
        """SIGKILL to uvicorn and its web processes, as a crash would end them; returns once uvicorn is gone."""
        self._end(kill=True)

    def output(self) -> str:
        """What the server wrote to stdout and stderr so far."""
        if self._log_file is None:
            return ""
        self._log_file.flush()
        return Path(self._log_file.name).read_text(errors="replace")

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def _spawn(self) -> None:
        if self._log_file is None:
            if self.log is None:
                self._log_file = tempfile.NamedTemporaryFile(prefix="uvicorn-", suffix=".log")
            else:
                self._log_file = self.log.open("ab")
        command = [
            sys.executable, "-m", "uvicorn", *self.app, "--host", HOST, "--port", str(self.port),
            "--workers", str(self.web_processes), "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip
        # A process group of its own, so that SIGKILL reaches every web process, as a crash of the machine would.
        self.process = subprocess.Popen(
            command, env=self.env, cwd=self.cwd, stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True
        )

    def _wait_until_healthy(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(self._failure(f"uvicorn exited with code {self.process.returncode}"))
            try:
                response = httpx.get(f"{self.url}/healthz", timeout=2.0)
            except httpx.TransportError as error:
                last = repr(error)
            else:
                if response.status_code == 200:
                    return
                last = f"{response.status_code}: {response.text}"
            time.sleep(0.1)
        waited = f"{self.url}/healthz did not answer 200 within {self.startup_timeout_s:.0f} s (last: {last})"
        raise RuntimeError(self._failure(waited))

    def _failure(self, what: str) -> str:
        return f"{what}; server output:\n{self.output()[-4000:]}"

    def _end(self, *, kill: bool, timeout_s: float = 30.0) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            if not kill:
                process.terminate()  # uvicorn stops its web processes, then itself
                try:
                    process.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    kill = True
            if kill:
                with contextlib.suppress(ProcessLookupError):  # the group is gone already
                    os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if self._log_file is not None:
            self._log_file.close()  # a temporary one is removed with it
            self._log_file = None

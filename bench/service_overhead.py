"""Wall time of the perfect-teacher CartPole run through server + worker vs the in-process `rlhf run`.

One invocation measures both, same seed and label budget: first `rlhf run` (in-process), then a uvicorn
server and one worker on a fresh SQLite folder and `rlhf run --via-server` against them (server and worker
are started before the clock starts, as a deployment would have them running). Prints the ratio; target ≤ 1.5.

    .venv/bin/python bench/service_overhead.py [--seed 0] [--labels 100]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from app.live_server import ServerProcess

TOKEN = "bench-admin-token"


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    print("   ", done.stdout.strip().splitlines()[0])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--labels", type=int, default=100)
    args = parser.parse_args()
    common = ["--labels", str(args.labels), "--seed", str(args.seed), "--no-progress"]
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        env = {**os.environ, "RLHF_DATA_DIR": str(tmp / "data"), "RLHF_ADMIN_TOKEN": TOKEN}
        print("in-process rlhf run:")
        in_process = timed([sys.executable, "-m", "worker.cli", "run", *common, "--out", str(tmp / "a")], env)

        subprocess.run([sys.executable, "-m", "worker.cli", "db", "upgrade"], env=env, check=True, capture_output=True)
        with ServerProcess(env) as server:
            worker = subprocess.Popen(
                [sys.executable, "-m", "worker.cli", "worker", "--poll-seconds", "0.2"],
                env=env,
                stderr=subprocess.DEVNULL,
            )
            try:
                time.sleep(2.0)  # the worker's imports, as in a running deployment
                print("through server + worker:")
                command = [sys.executable, "-m", "worker.cli", "run", "--via-server", server.url, "--token", TOKEN,
                           *common, "--out", str(tmp / "b")]  # fmt: skip
                via_server = timed(command, env)
            finally:
                worker.terminate()
                worker.wait(timeout=60)
    print(f"in-process {in_process:.1f} s, server + worker {via_server:.1f} s, ratio {via_server / in_process:.2f}")


if __name__ == "__main__":
    main()

"""Property-based fuzz of the live OpenAPI schema with schemathesis, as the admin and as a rater.

Starts uvicorn on a fresh SQLite database (or on `--database-url`, migrated first), seeds a small world
(an experiment with segments, pairs and an invited rater, so that ids in the schema's examples exist), then
runs `st run` once with the admin token and once with the rater's, each for `--seconds`, with the checks
below. Prints per run the cases tested and the failures by check, as JSON; exits 1 when any run failed.

    python bench/fuzz.py --seconds 300                                        # SQLite
    python bench/fuzz.py --seconds 300 --database-url postgresql+psycopg://postgres@127.0.0.1:5432/fuzz

tests/app/test_fuzz.py runs it for a short time in the full test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from app.live_server import ServerProcess  # noqa: E402

CHECKS = ("not_a_server_error", "status_code_conformance", "response_schema_conformance", "negative_data_rejection")
ADMIN_TOKEN = "fuzz-admin-token-0123456789"


def seed_world(base_url: str) -> str:
    """An experiment with four segments, two pairs and an invited rater; returns the rater's token."""
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as admin:
        experiment = admin.post(
            "/api/v1/experiments",
            json={"name": "fuzz", "env_id": "CartPole-v1", "obs_shape": [4], "num_actions": 2},
        )
        experiment.raise_for_status()
        experiment_id = experiment.json()["id"]
        segment = {"obs": [[0.0, 0.1, 0.2, 0.3]] * 3, "actions": [0, 1, 0], "true_rewards": [1.0, 1.0, 1.0]}
        segments = admin.post(f"/api/v1/experiments/{experiment_id}/segments", json={"segments": [segment] * 4})
        segments.raise_for_status()
        a, b, c, d = segments.json()["segment_ids"]
        pairs = [{"left_segment_id": a, "right_segment_id": b}, {"left_segment_id": c, "right_segment_id": d}]
        admin.post(f"/api/v1/experiments/{experiment_id}/pairs", json={"pairs": pairs}).raise_for_status()
        invite = admin.post("/api/v1/invites", json={"name": "fuzzer", "experiment_ids": [experiment_id]})
        invite.raise_for_status()
        return str(invite.json()["token"])


def run_schemathesis(base_url: str, token: str, seconds: int, report_dir: Path, seed: int) -> dict[str, Any]:
    """One `st run`; returns the cases tested, failures by check and the command's exit code."""
    report = report_dir / "report.ndjson"
    command = [
        str(Path(sys.executable).with_name("st")), "run", f"{base_url}/openapi.json",
        "--checks", ",".join(CHECKS),
        "--header", f"Authorization: Bearer {token}",
        "--max-time", str(seconds),
        "--seed", str(seed),
        "--workers", "1",
        "--report", "ndjson", "--report-ndjson-path", str(report),
    ]  # fmt: skip
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "fuzz_hooks", "PYTHONPATH": str(Path(__file__).resolve().parent)}
    result = subprocess.run(command, capture_output=True, text=True, cwd=report_dir, env=env)
    return {**summarize(report), "exit_code": result.returncode, "output": result.stdout[-6000:]}


def summarize(report: Path) -> dict[str, Any]:
    """Cases tested and distinct failures by check, from schemathesis' NDJSON event stream."""
    cases = 0
    failures: Counter[str] = Counter()
    for line in report.read_text().splitlines():
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if finished is None:
            continue
        recorder = finished.get("recorder", {})
        cases += len(recorder.get("cases", {}))
        for checks in recorder.get("checks", {}).values():
            for check in checks:
                if check.get("status") == "failure":
                    failures[check["name"]] += 1
    return {"cases": cases, "failures": dict(failures)}


def fuzz(seconds: int, database_url: str | None, seed: int = 0, web_processes: int = 1) -> dict[str, Any]:
    """Serve the app on a fresh database and fuzz it as admin and as rater; the summary of both runs."""
    with tempfile.TemporaryDirectory(prefix="rlhf-fuzz-") as folder:
        tmp = Path(folder)
        env = {
            **os.environ,
            "RLHF_DATA_DIR": str(tmp / "data"),
            "RLHF_ADMIN_TOKEN": ADMIN_TOKEN,
            # schemathesis sends requests with broken tokens too; past the limit every request would be 429
            # and the routes behind it untested (the limit has its own tests).
            "RLHF_AUTH_FAILURES_PER_MINUTE": "1000000",
        }
        if database_url:
            from app.migrate import upgrade_database
            from app.settings import Settings

            upgrade_database(Settings(database_url=database_url))
            env["RLHF_DATABASE_URL"] = database_url
        with ServerProcess(env, web_processes=web_processes) as server:
            rater_token = seed_world(server.url)
            runs = {}
            for role, token in (("admin", ADMIN_TOKEN), ("rater", rater_token)):
                report_dir = tmp / role
                report_dir.mkdir()
                runs[role] = run_schemathesis(server.url, token, seconds, report_dir, seed)
            runs["server_errors_logged"] = server.output().count("Traceback")
        return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=30, help="Fuzzing time per token.")
    parser.add_argument("--database-url", default=None, help="A PostgreSQL URL; default a fresh SQLite file.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--web-processes", type=int, default=1, help="uvicorn --workers (docker compose runs 2).")
    parser.add_argument("--verbose", action="store_true", help="Also print schemathesis' output.")
    args = parser.parse_args()
    runs = fuzz(args.seconds, args.database_url, args.seed, args.web_processes)
    for role in ("admin", "rater"):
        if args.verbose or runs[role]["exit_code"] != 0:
            print(runs[role]["output"], file=sys.stderr)
    print(json.dumps({role: {k: v for k, v in run.items() if k != "output"} if isinstance(run, dict) else run
                      for role, run in runs.items()}, indent=2))
    sys.exit(0 if all(runs[role]["exit_code"] == 0 for role in ("admin", "rater")) else 1)


if __name__ == "__main__":
    main()

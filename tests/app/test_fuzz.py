"""The live OpenAPI schema holds under a property-based fuzzer: schemathesis (bench/fuzz.py) against uvicorn on
SQLite, once with the admin token and once with a rater's, finds no server error, no undocumented status code,
no body off its schema and no invalid input accepted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.process  # serves uvicorn on a socket: in the full suite, not in the fast tier


def test_fuzzing_the_live_schema_finds_no_failure() -> None:
    command = [sys.executable, str(ROOT / "bench" / "fuzz.py"), "--seconds", "25"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=400, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-12_000:]
    summary = json.loads(result.stdout)
    for role in ("admin", "rater"):
        assert summary[role]["failures"] == {} and summary[role]["cases"] > 100, summary
    assert summary["server_errors_logged"] == 0

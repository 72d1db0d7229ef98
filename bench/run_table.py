"""What the long benchmarks share: runs side by side, one per process, and a results file of JSON lines that a
later invocation resumes from, so a table can be finished in several sittings or on a bigger machine."""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import TypeVar

Job = TypeVar("Job")


def run_all(
    run_job: Callable[[Job], dict | None], jobs: list[Job], processes: int
) -> Iterator[tuple[Job, dict | None]]:
    """Each job with its row (None if it failed; the traceback goes to stderr), in the order they finish.
    `run_job` must be a module-level function, so that a worker process can import it."""
    if processes == 1:
        for job in jobs:
            try:
                yield job, run_job(job)
            except Exception:
                traceback.print_exc()
                yield job, None
        return
    # spawn: each worker imports torch (and MuJoCo) afresh instead of inheriting a forked copy of this process's.
    with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(run_job, job): job for job in jobs}
        for future in as_completed(futures):
            try:
                yield futures[future], future.result()
            except Exception:
                traceback.print_exc()
                yield futures[future], None


def load_rows(path: Path, row_key: Callable[[dict], tuple]) -> dict[tuple, dict]:
    """The rows already in the results file, by key (a later line wins); a torn last line is ignored."""
    rows: dict[tuple, dict] = {}
    if not path.exists():
        return rows
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        rows[row_key(row)] = row
    return rows


def append_row(path: Path, row: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        out.write(json.dumps(row) + "\n")


def fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)

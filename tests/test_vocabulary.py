"""The web process and the worker spell choices the same way (each defines them once, neither imports the
other's), and the database accepts exactly the app's words."""

from __future__ import annotations

from typing import get_args

from app import vocabulary
from app.models import Base
from worker import types as worker_types


def test_worker_choices_are_the_apps() -> None:
    assert get_args(worker_types.Choice) == get_args(vocabulary.Choice) == vocabulary.CHOICES
    assert tuple(worker_types.CHOICE_TARGET) == vocabulary.CHOICES


def test_check_constraints_list_the_vocabulary() -> None:
    constraints = {
        f"{table.name}.{constraint.name}": str(constraint.sqltext)  # type: ignore[attr-defined]
        for table in Base.metadata.tables.values()
        for constraint in table.constraints
        if constraint.name and hasattr(constraint, "sqltext")
    }
    expected = {
        "experiments.ck_experiments_teacher_mode": vocabulary.TEACHER_MODES,
        "experiments.ck_experiments_status": vocabulary.EXPERIMENT_STATUSES,
        "segments.ck_segments_clip_status": vocabulary.CLIP_STATUSES,
        "pairs.ck_pairs_status": vocabulary.PAIR_STATUSES,
        "raters.ck_raters_kind": vocabulary.RATER_KINDS,
        "labels.ck_labels_choice": vocabulary.CHOICES,
        "jobs.ck_jobs_status": vocabulary.JOB_STATUSES,
    }
    for name, words in expected.items():
        assert constraints[name].endswith("IN (" + ", ".join(repr(word) for word in words) + ")"), name

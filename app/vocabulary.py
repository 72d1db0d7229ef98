"""The words the service stores and accepts, each defined once as a Literal; the tuples are derived from it.

Models (CHECK constraints), schemas (request validation), the data layer and the pages all use these, so a
new word is added in one place. The worker keeps its own `worker.types.Choice` (the web process never
imports the worker); a test checks the two agree.
"""

from __future__ import annotations

from typing import Literal, get_args

Choice = Literal["left", "right", "equal", "skip"]
"""A rater's answer about a pair: which clip is better, both equally good, or can't tell (skip)."""
CHOICES: tuple[Choice, ...] = get_args(Choice)

TeacherMode = Literal["human", "oracle", "mixed"]
"""Who answers an experiment's pairs: invited raters, the synthetic teacher, or raters then the teacher."""
TEACHER_MODES: tuple[TeacherMode, ...] = get_args(TeacherMode)

ExperimentStatus = Literal["created", "running", "paused", "done", "failed"]
"""`failed`: the worker could not run it (its env did not import, or has spaces we don't support); `error` says why."""
EXPERIMENT_STATUSES: tuple[ExperimentStatus, ...] = get_args(ExperimentStatus)

PairStatus = Literal["pending", "complete", "cancelled"]
PAIR_STATUSES: tuple[PairStatus, ...] = get_args(PairStatus)

RaterKind = Literal["human", "oracle"]
RATER_KINDS: tuple[RaterKind, ...] = get_args(RaterKind)

JobStatus = Literal["queued", "running", "done", "failed"]
JOB_STATUSES: tuple[JobStatus, ...] = get_args(JobStatus)

ClipStatus = Literal["none", "queued", "ready", "failed"]
"""A segment's clip: none asked for, waiting for the worker to render it, ready to play, or failed."""
CLIP_STATUSES: tuple[ClipStatus, ...] = get_args(ClipStatus)

"""Rater statistics for the experiment page: labels, response times, agreement with other raters and with a
perfect synthetic teacher (from the segments' stored true returns), and pairs still waiting for a rater.

Plain Python over rows read once; no torch. "skip" (can't tell) answers count as labels but are left out of
every agreement: they state no preference.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from app.crud.common import LEFT_SEGMENT, RIGHT_SEGMENT, join_pair_segments
from app.models import Label, Pair, Rater, RaterExperiment

# Returns closer than this are a tie: a perfect teacher answers "equal" (float32 sums of equal rewards).
TIE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class LabelRecord:
    """One stored label with the true returns of its two segments (None when unknown)."""

    pair_id: int
    rater_id: int
    choice: str
    response_time_ms: int | None
    left_return: float | None
    right_return: float | None


@dataclass(frozen=True)
class Agreement:
    """How many compared answers matched; `rate` is None when nothing could be compared."""

    matches: int = 0
    compared: int = 0

    @property
    def rate(self) -> float | None:
        return self.matches / self.compared if self.compared else None


@dataclass(frozen=True)
class RaterSummary:
    """One rater's work on an experiment."""

    rater_id: int
    name: str
    kind: str
    labels: int
    skips: int
    mean_response_ms: float | None
    with_others: Agreement
    with_teacher: Agreement


@dataclass(frozen=True)
class ExperimentAgreement:
    """Per-rater summaries, plus agreement over all rater pairs and over all humans against the teacher."""

    raters: list[RaterSummary]
    between_raters: Agreement
    with_teacher: Agreement
    pairs_multiply_labeled: int


def perfect_teacher_choice(left_return: float | None, right_return: float | None) -> str | None:
    """What a perfect teacher (undiscounted true return, no noise) answers; None when a return is unknown."""
    if left_return is None or right_return is None:
        return None
    if abs(left_return - right_return) <= TIE_TOLERANCE * max(1.0, abs(left_return), abs(right_return)):
        return "equal"
    return "left" if left_return > right_return else "right"


def summarize(records: Iterable[LabelRecord], raters: Sequence[tuple[int, str, str]]) -> ExperimentAgreement:
    """Agreement and response times from label records; `raters` gives (id, name, kind) to list, in order.

    Raters with labels but absent from `raters` are appended (named by id) so no label goes uncounted.
    """
    records = list(records)
    by_pair: dict[int, dict[int, str]] = defaultdict(dict)
    labels: dict[int, int] = defaultdict(int)
    skips: dict[int, int] = defaultdict(int)
    times: dict[int, list[int]] = defaultdict(list)
    teacher_matches: dict[int, int] = defaultdict(int)
    teacher_compared: dict[int, int] = defaultdict(int)
    for record in records:
        labels[record.rater_id] += 1
        if record.response_time_ms is not None:
            times[record.rater_id].append(record.response_time_ms)
        if record.choice == "skip":
            skips[record.rater_id] += 1
            continue
        by_pair[record.pair_id][record.rater_id] = record.choice
        teacher = perfect_teacher_choice(record.left_return, record.right_return)
        if teacher is not None:
            teacher_compared[record.rater_id] += 1
            teacher_matches[record.rater_id] += record.choice == teacher

    others_matches: dict[int, int] = defaultdict(int)
    others_compared: dict[int, int] = defaultdict(int)
    between = [0, 0]
    multiply_labeled = 0
    for answers in by_pair.values():
        if len(answers) < 2:
            continue
        multiply_labeled += 1
        ids = sorted(answers)
        for i, first in enumerate(ids):
            for second in ids[i + 1 :]:
                same = answers[first] == answers[second]
                between[0] += same
                between[1] += 1
                for rater_id in (first, second):
                    others_matches[rater_id] += same
                    others_compared[rater_id] += 1

    listed = list(raters)
    known = {rater_id for rater_id, _, _ in listed}
    listed += [(rater_id, f"rater {rater_id}", "human") for rater_id in sorted(labels) if rater_id not in known]
    summaries = [
        RaterSummary(
            rater_id=rater_id,
            name=name,
            kind=kind,
            labels=labels[rater_id],
            skips=skips[rater_id],
            mean_response_ms=sum(times[rater_id]) / len(times[rater_id]) if times[rater_id] else None,
            with_others=Agreement(others_matches[rater_id], others_compared[rater_id]),
            with_teacher=Agreement(teacher_matches[rater_id], teacher_compared[rater_id]),
        )
        for rater_id, name, kind in listed
    ]
    human_teacher = [s.with_teacher for s in summaries if s.kind == "human"]
    return ExperimentAgreement(
        raters=summaries,
        between_raters=Agreement(between[0], between[1]),
        with_teacher=Agreement(sum(a.matches for a in human_teacher), sum(a.compared for a in human_teacher)),
        pairs_multiply_labeled=multiply_labeled,
    )


def label_records(session: Session, experiment_id: int) -> list[LabelRecord]:
    """Every label of the experiment with its segments' true returns, in one query."""
    query = select(
        Label.pair_id,
        Label.rater_id,
        Label.choice,
        Label.response_time_ms,
        LEFT_SEGMENT.true_return,
        RIGHT_SEGMENT.true_return,
    )
    rows = session.execute(
        join_pair_segments(query, pair_id=Label.pair_id)
        .where(Label.experiment_id == experiment_id)
        .order_by(Label.id)
    )
    return [LabelRecord(*row) for row in rows]


def experiment_agreement(session: Session, experiment_id: int) -> ExperimentAgreement:
    """Summaries of every invited rater (and any other rater with labels) of the experiment."""
    invited = session.execute(
        select(Rater.id, Rater.name, Rater.kind)
        .join(RaterExperiment, RaterExperiment.rater_id == Rater.id)
        .where(RaterExperiment.experiment_id == experiment_id)
        .order_by(Rater.id)
    ).all()
    records = label_records(session, experiment_id)
    invited_ids = {row[0] for row in invited}
    extra_ids = sorted({record.rater_id for record in records} - invited_ids)
    extra = (
        session.execute(select(Rater.id, Rater.name, Rater.kind).where(Rater.id.in_(extra_ids))).all()
        if extra_ids
        else []
    )
    raters = [(int(i), str(n), str(k)) for i, n, k in [*invited, *extra]]
    return summarize(records, raters)


def pairs_waiting(session: Session, experiment_id: int, rater_id: int) -> int:
    """Pending pairs of the experiment this rater has not labeled (those the rater holds included)."""
    return (
        session.scalar(
            select(func.count())
            .select_from(Pair)
            .where(
                Pair.experiment_id == experiment_id,
                Pair.status == "pending",
                ~exists().where(Label.pair_id == Pair.id, Label.rater_id == rater_id),
            )
        )
        or 0
    )

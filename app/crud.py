"""The data layer: every read and write of the service, shared by the API, the worker and the tests.

Functions that write run their own transaction (`app.db.write_transaction`) and commit it, so a refused
operation (a raised `app.errors.DomainError`) leaves nothing behind. Humans, the synthetic teacher and
imports all store labels through `submit_label` / `import_labels`.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import Integer, String, and_, bindparam, case, delete, exists, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from app.db import is_sqlite, write_transaction
from app.errors import Conflict, Invalid, NotFound
from app.models import (
    AppSecret,
    Checkpoint,
    Clip,
    Experiment,
    Job,
    Label,
    Lease,
    MetricPoint,
    Pair,
    Rater,
    RaterExperiment,
    Segment,
    utcnow,
)
from app.schemas import ExperimentCreate, PairIn, SegmentIn
from app.vocabulary import CHOICES, ClipStatus

Row = TypeVar("Row")

RENDER_CLIP_JOB = "render_clip"
ADMIN_TOKEN_SECRET = "admin_token"


def as_utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def hash_token(token: str) -> str:
    """Tokens are 256 random bits, so one SHA-256 is enough to store them safely."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


# --------------------------------------------------------------------------------------------- experiments


def create_experiment(session: Session, data: ExperimentCreate) -> Experiment:
    """Store a new experiment; the name must be unused."""
    if data.num_actions is not None and data.action_dtype != "int64":
        raise Invalid("num_actions", "only discrete (int64) action spaces have num_actions")
    if data.action_dtype == "int64" and data.num_actions is None:
        raise Invalid("num_actions", "required for discrete (int64) actions")
    if any(size < 1 for size in data.obs_shape):
        raise Invalid("obs_shape", "sizes must be positive")
    if any(size < 1 for size in data.action_shape):
        raise Invalid("action_shape", "sizes must be positive")
    with write_transaction(session):
        if session.scalar(select(Experiment.id).where(Experiment.name == data.name)) is not None:
            raise Conflict("name", f"an experiment named {data.name!r} exists")
        experiment = Experiment(**data.model_dump())
        session.add(experiment)
    return experiment


def _get_or_not_found(session: Session, model: type[Row], row_id: int, noun: str) -> Row:
    """The row with this primary key, or NotFound naming the `<noun>_id` field (an API 404)."""
    row = session.get(model, row_id)
    if row is None:
        raise NotFound(f"{noun}_id", f"no {noun} {row_id}")
    return row


def get_experiment(session: Session, experiment_id: int) -> Experiment:
    return _get_or_not_found(session, Experiment, experiment_id, "experiment")


def list_experiments(session: Session, rater_id: int | None = None) -> list[Experiment]:
    """All experiments, or those `rater_id` was invited to."""
    query = select(Experiment).order_by(Experiment.id)
    if rater_id is not None:
        query = query.join(RaterExperiment, RaterExperiment.experiment_id == Experiment.id).where(
            RaterExperiment.rater_id == rater_id
        )
    return list(session.scalars(query))


def experiment_counts(session: Session, experiment_id: int) -> dict[str, int]:
    """Segments, pending and complete pairs, labels and invited raters of an experiment."""
    pair_counts = dict(
        session.execute(
            select(Pair.status, func.count()).where(Pair.experiment_id == experiment_id).group_by(Pair.status)
        ).all()
    )
    return {
        "segments": session.scalar(select(func.count()).where(Segment.experiment_id == experiment_id)) or 0,
        "pairs_pending": pair_counts.get("pending", 0),
        "pairs_complete": pair_counts.get("complete", 0),
        "labels": session.scalar(select(func.count()).where(Label.experiment_id == experiment_id)) or 0,
        "raters": session.scalar(select(func.count()).where(RaterExperiment.experiment_id == experiment_id))
        or 0,
    }


def update_experiment(session: Session, experiment_id: int, changes: dict[str, Any]) -> Experiment:
    """Change mode, instructions, status or budgets; a mode switch applies from the next pair leased."""
    allowed = {
        "teacher_mode",
        "instructions",
        "status",
        "label_budget",
        "timestep_budget",
        "human_timeout_seconds",
    }
    unknown = set(changes) - allowed
    if unknown:
        raise Invalid(sorted(unknown)[0], "cannot be changed")
    with write_transaction(session):
        experiment = get_experiment(session, experiment_id)
        for name, value in changes.items():
            setattr(experiment, name, value)
        experiment.updated_at = utcnow()
    return experiment


def acquire_experiment(session: Session, experiment_id: int, worker_id: str, lease_seconds: float) -> bool:
    """Take or renew a worker's ownership of an experiment; False while another worker's lease is live."""
    with write_transaction(session):
        now = utcnow()
        result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
            update(Experiment)
            .where(
                Experiment.id == experiment_id,
                (Experiment.owner_worker.is_(None))
                | (Experiment.owner_worker == worker_id)
                | (Experiment.owner_expires_at < now),
            )
            .values(owner_worker=worker_id, owner_expires_at=now + timedelta(seconds=lease_seconds))
        )
        if result.rowcount == 0:
            get_experiment(session, experiment_id)  # unknown id → NotFound rather than False
            return False
        return True


def release_experiment(session: Session, experiment_id: int, worker_id: str) -> None:
    """Give up ownership (on clean shutdown) so another worker can start at once."""
    with write_transaction(session):
        session.execute(
            update(Experiment)
            .where(Experiment.id == experiment_id, Experiment.owner_worker == worker_id)
            .values(owner_worker=None, owner_expires_at=None)
        )


# ------------------------------------------------------------------------------------------------ segments


@dataclass(frozen=True)
class SegmentArrays:
    """A stored segment's arrays: obs (L, *obs_shape), actions (L, *action_shape), true_rewards (L,) float32
    (NaN when unknown), ended (L,) bool."""

    obs: np.ndarray
    actions: np.ndarray
    true_rewards: np.ndarray
    ended: np.ndarray


def _to_array(values: Any, dtype: str, field: str) -> np.ndarray:
    try:
        array = np.asarray(values)
    except ValueError as error:  # ragged nesting
        raise Invalid(field, "ragged array: rows differ in length") from error
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise Invalid(field, "must be a (nested) list of numbers")
    if np.dtype(dtype).kind in "iu":
        if array.dtype.kind == "b" or (
            array.dtype.kind == "f" and array.size and not np.all(array == np.round(array))
        ):
            raise Invalid(field, f"must hold integers ({dtype})")
        if array.dtype.kind == "f" and array.size and not np.all(np.isfinite(array)):
            raise Invalid(field, "must not contain NaN or infinity")
        info = np.iinfo(dtype)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise Invalid(field, f"values out of range for {dtype}")
    elif array.dtype.kind == "b":
        raise Invalid(field, "must hold numbers, not booleans")
    with np.errstate(over="ignore", invalid="ignore"):  # overflow becomes inf, refused just below
        converted = array.astype(dtype)
    if converted.dtype.kind == "f" and not np.all(np.isfinite(converted)):
        raise Invalid(field, "must not contain NaN or infinity (or values too large for " + dtype + ")")
    return converted


def validate_segment(experiment: Experiment, segment: SegmentIn, field: str) -> SegmentArrays:
    """Check one incoming segment against the experiment's declared spaces; raise Invalid naming the field."""
    obs = _to_array(segment.obs, experiment.obs_dtype, f"{field}.obs")
    length = obs.shape[0]
    if obs.shape[1:] != tuple(experiment.obs_shape):
        raise Invalid(
            f"{field}.obs",
            f"shape {list(obs.shape)} does not match (L, *obs_shape) = (L, {experiment.obs_shape})",
        )
    actions = _to_array(segment.actions, experiment.action_dtype, f"{field}.actions")
    if actions.shape != (length, *experiment.action_shape):
        raise Invalid(
            f"{field}.actions",
            f"shape {list(actions.shape)} does not match (L, *action_shape) = "
            f"{[length, *experiment.action_shape]}",
        )
    if (
        experiment.num_actions is not None
        and actions.size
        and (actions.min() < 0 or actions.max() >= experiment.num_actions)
    ):
        raise Invalid(f"{field}.actions", f"discrete actions must lie in [0, {experiment.num_actions})")
    if segment.true_rewards is None:
        true_rewards = np.full(length, np.nan, dtype=np.float32)
    else:
        true_rewards = _to_array(segment.true_rewards, "float32", f"{field}.true_rewards")
        if true_rewards.shape != (length,):
            raise Invalid(
                f"{field}.true_rewards", f"shape {list(true_rewards.shape)} does not match (L,) = [{length}]"
            )
    ended = np.zeros(length, dtype=bool) if segment.ended is None else np.asarray(segment.ended, dtype=bool)
    if ended.shape != (length,):
        raise Invalid(f"{field}.ended", f"shape {list(ended.shape)} does not match (L,) = [{length}]")
    if segment.render is not None and segment.render.actions is not None:
        replay = _to_array(segment.render.actions, experiment.action_dtype, f"{field}.render.actions")
        if replay.shape[1:] != tuple(experiment.action_shape):
            raise Invalid(f"{field}.render.actions", "each action must have the experiment's action_shape")
        if segment.render.first_frame + length > replay.shape[0] + 1:
            raise Invalid(f"{field}.render.first_frame", "the replay is shorter than first_frame + L frames")
    return SegmentArrays(obs=obs, actions=actions, true_rewards=true_rewards, ended=ended)


def add_segments(
    session: Session, experiment_id: int, segments: Sequence[SegmentIn]
) -> tuple[list[int], list[int]]:
    """Validate and store segments; queue a worker render job for each with a render spec.

    Returns:
        (segment ids, render job ids). Nothing is stored if any segment is invalid.
    """
    experiment = get_experiment(session, experiment_id)
    checked = [validate_segment(experiment, segment, f"segments[{i}]") for i, segment in enumerate(segments)]
    with write_transaction(session):
        rows = []
        for incoming, arrays in zip(segments, checked, strict=True):
            known_rewards = incoming.true_rewards is not None
            render_spec = None
            if incoming.render is not None:
                render_spec = incoming.render.model_dump()
                render_spec["env_id"] = render_spec["env_id"] or incoming.env_id or experiment.env_id
            row = Segment(
                experiment_id=experiment_id,
                length=int(arrays.obs.shape[0]),
                obs=arrays.obs.tobytes(),
                obs_shape=list(arrays.obs.shape),
                obs_dtype=str(arrays.obs.dtype),
                actions=arrays.actions.tobytes(),
                actions_shape=list(arrays.actions.shape),
                actions_dtype=str(arrays.actions.dtype),
                true_rewards=arrays.true_rewards.tobytes() if known_rewards else None,
                true_return=float(arrays.true_rewards.sum()) if known_rewards else None,
                ended=arrays.ended.tobytes(),
                env_id=incoming.env_id or experiment.env_id,
                seed=incoming.seed
                if incoming.seed is not None
                else (incoming.render.seed if incoming.render else None),
                render_spec=render_spec,
                policy_step=incoming.policy_step,
                clip_status="queued" if render_spec else "none",
            )
            session.add(row)
            rows.append(row)
        session.flush()
        job_ids = []
        for row in rows:
            if row.render_spec is not None:
                job = Job(kind=RENDER_CLIP_JOB, experiment_id=experiment_id, payload={"segment_id": row.id})
                session.add(job)
                session.flush()
                job_ids.append(job.id)
    return [row.id for row in rows], job_ids


def get_segment(session: Session, segment_id: int) -> Segment:
    return _get_or_not_found(session, Segment, segment_id, "segment")


def segment_arrays(segment: Segment) -> SegmentArrays:
    """Unpack a stored segment's arrays (copies, so callers may write to them)."""
    obs = np.frombuffer(segment.obs, dtype=segment.obs_dtype).reshape(segment.obs_shape).copy()
    actions = (
        np.frombuffer(segment.actions, dtype=segment.actions_dtype).reshape(segment.actions_shape).copy()
    )
    if segment.true_rewards is None:
        true_rewards = np.full(segment.length, np.nan, dtype=np.float32)
    else:
        true_rewards = np.frombuffer(segment.true_rewards, dtype=np.float32).copy()
    ended = np.frombuffer(segment.ended, dtype=bool).copy()
    return SegmentArrays(obs=obs, actions=actions, true_rewards=true_rewards, ended=ended)


def list_segments(
    session: Session, experiment_id: int, after_id: int = 0, limit: int = 1000
) -> list[Segment]:
    """Segments of an experiment with id > after_id, oldest first (for the worker's pair chooser)."""
    return list(
        session.scalars(
            select(Segment)
            .where(Segment.experiment_id == experiment_id, Segment.id > after_id)
            .order_by(Segment.id)
            .limit(limit)
        )
    )


def queue_uploaded_frames(
    session: Session, segment_id: int, upload_dir: Path, frames: np.ndarray, fps: int
) -> Job:
    """Keep frames a client sent, (T, H, W, 3) uint8, and queue a job that encodes them into the clip."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise Invalid(
            "frames", f"must be a (T, H, W, 3) uint8 array, got {frames.dtype} {list(frames.shape)}"
        )
    if frames.shape[1] < 2 or frames.shape[2] < 2:
        raise Invalid("frames", "frames must be at least 2×2 pixels")
    segment = get_segment(session, segment_id)
    upload_dir.mkdir(parents=True, exist_ok=True)
    path = upload_dir / f"segment-{segment.id}-{secrets.token_hex(6)}.npy"
    np.save(path, frames)
    with write_transaction(session):
        job = Job(
            kind=RENDER_CLIP_JOB,
            experiment_id=segment.experiment_id,
            payload={"segment_id": segment_id, "frames_path": str(path.resolve()), "fps": fps},
        )
        session.add(job)
        session.execute(update(Segment).where(Segment.id == segment_id).values(clip_status="queued"))
    return job


def get_clip(session: Session, content_hash: str) -> Clip | None:
    return session.get(Clip, content_hash)


def attach_clip(session: Session, segment_id: int, clip: dict[str, Any]) -> None:
    """Record an encoded clip (once per content hash) and point the segment at it."""
    with write_transaction(session):
        if session.get(Clip, clip["content_hash"]) is None:
            session.add(Clip(**clip))
            session.flush()
        session.execute(
            update(Segment)
            .where(Segment.id == segment_id)
            .values(clip_hash=clip["content_hash"], clip_status="ready")
        )


def mark_clip_failed(session: Session, segment_id: int) -> None:
    with write_transaction(session):
        session.execute(update(Segment).where(Segment.id == segment_id).values(clip_status="failed"))


# --------------------------------------------------------------------------------------------------- pairs


def add_pairs(
    session: Session, experiment_id: int, pairs: Sequence[PairIn], source: str = "api"
) -> list[int]:
    """Queue pairs of this experiment's segments for labeling."""
    experiment = get_experiment(session, experiment_id)
    wanted_ids = {p.left_segment_id for p in pairs} | {p.right_segment_id for p in pairs}
    owners = dict(
        session.execute(select(Segment.id, Segment.experiment_id).where(Segment.id.in_(wanted_ids))).all()
    )
    for i, pair in enumerate(pairs):
        if pair.left_segment_id == pair.right_segment_id:
            raise Invalid(f"pairs[{i}].right_segment_id", "a segment cannot be compared with itself")
        for side in ("left_segment_id", "right_segment_id"):
            segment_id = getattr(pair, side)
            if segment_id not in owners:
                raise NotFound(f"pairs[{i}].{side}", f"no segment {segment_id}")
            if owners[segment_id] != experiment_id:
                raise Invalid(f"pairs[{i}].{side}", f"segment {segment_id} belongs to another experiment")
    with write_transaction(session):
        rows = [
            Pair(
                experiment_id=experiment_id,
                left_segment_id=pair.left_segment_id,
                right_segment_id=pair.right_segment_id,
                priority=pair.priority,
                acquisition_score=pair.acquisition_score,
                labels_wanted=pair.labels_wanted or experiment.labels_per_pair,
                source=source,
            )
            for pair in pairs
        ]
        session.add_all(rows)
        session.flush()
    return [row.id for row in rows]


def get_pair(session: Session, pair_id: int) -> Pair:
    return _get_or_not_found(session, Pair, pair_id, "pair")


@dataclass(frozen=True)
class LeaseInfo:
    """A pair held by a rater until `expires_at`, with what the page needs to show its two clips."""

    lease_id: int
    pair_id: int
    experiment_id: int
    rater_id: int
    expires_at: datetime
    left_segment_id: int
    right_segment_id: int
    left_clip_status: ClipStatus
    right_clip_status: ClipStatus


# The lease and label hot paths use Core statements built once (SQLAlchemy then reuses their compiled form):
# building ORM statements per request cost more than running them. Each is a handful of statements, since on
# PostgreSQL every statement is a round trip.


def _upsert(postgres: bool) -> Any:
    return postgresql_insert if postgres else sqlite_insert


@functools.cache
def _lease_statements(postgres: bool, excluding: bool) -> dict[str, Any]:
    now = bindparam("now", type_=Lease.expires_at.type)
    rater_id = bindparam("rater_id", type_=Integer())
    pair_id = bindparam("pair_id", type_=Integer())

    def live_leases(of_pair: Any) -> Any:
        return (
            select(func.count()).select_from(Lease).where(Lease.pair_id == of_pair, Lease.expires_at > now)
        ).scalar_subquery()

    left, right = aliased(Segment), aliased(Segment)
    candidate = (
        select(
            Pair.id,
            Pair.labels_wanted,
            Pair.labels_count,
            Pair.left_segment_id,
            Pair.right_segment_id,
            left.clip_status.label("left_clip_status"),
            right.clip_status.label("right_clip_status"),
        )
        .join(left, left.id == Pair.left_segment_id)
        .join(right, right.id == Pair.right_segment_id)
        .where(
            Pair.experiment_id == bindparam("experiment_id", type_=Integer()),
            Pair.status == "pending",
            Pair.labels_count + live_leases(Pair.id) < Pair.labels_wanted,
            ~exists().where(Label.pair_id == Pair.id, Label.rater_id == rater_id),
            ~exists().where(Lease.pair_id == Pair.id, Lease.rater_id == rater_id, Lease.expires_at > now),
        )
        # Highest priority first, then the newest pair (behaviour of the latest policy is the most useful
        # to label); both walk ix_pairs_queue backwards, so no sort and an early stop.
        .order_by(Pair.priority.desc(), Pair.id.desc())
        .limit(1)
    )
    if excluding:
        candidate = candidate.where(Pair.id.not_in(bindparam("rejected", expanding=True)))
    if postgres:
        candidate = candidate.with_for_update(skip_locked=True, of=Pair)
    # Inserts the lease only if the pair still has room. On PostgreSQL this re-counts under the pair's row
    # lock in a fresh statement, so it sees leases committed by earlier lock holders after the candidate
    # query's snapshot; on SQLite the transaction runs alone and the condition always holds. A rater's own
    # expired lease on the pair is renewed in place (unique pair_id, rater_id).
    values = select(
        pair_id,
        rater_id,
        bindparam("experiment_id", type_=Integer()),
        now,
        bindparam("expires_at", type_=Lease.expires_at.type),
    ).where(bindparam("labels_count", type_=Integer()) + live_leases(pair_id) < bindparam("labels_wanted"))
    insert_lease = _upsert(postgres)(Lease).from_select(
        ["pair_id", "rater_id", "experiment_id", "created_at", "expires_at"], values
    )
    insert_lease = insert_lease.on_conflict_do_update(
        index_elements=["pair_id", "rater_id"],
        set_={"created_at": insert_lease.excluded.created_at, "expires_at": insert_lease.excluded.expires_at},
    ).returning(Lease.id)
    return {"candidate": candidate, "insert": insert_lease}


def lease_pair(session: Session, experiment_id: int, rater_id: int, lease_seconds: float) -> LeaseInfo | None:
    """Lease the next pair to a rater, or None when nothing is waiting.

    Offers the highest-priority pair, newest first among equals. A pair is offered while its labels plus live
    leases fall short of `labels_wanted`, and never to a rater who labeled it or holds it. On PostgreSQL
    candidates are locked with FOR UPDATE SKIP LOCKED and re-counted under the lock; on SQLite the whole
    transaction is BEGIN IMMEDIATE, so it runs alone.
    """
    postgres = not is_sqlite(session)
    with write_transaction(session):
        connection = session.connection()  # Core execution: skips the ORM's per-statement bookkeeping
        now = utcnow()
        expires_at = now + timedelta(seconds=lease_seconds)
        rejected: list[int] = []
        for _attempt in range(20):
            statements = _lease_statements(postgres, bool(rejected))
            params: dict[str, Any] = {"experiment_id": experiment_id, "rater_id": rater_id, "now": now}
            if rejected:
                params["rejected"] = rejected
            candidate = connection.execute(statements["candidate"], params).first()
            if candidate is None:
                return None
            lease_id = connection.execute(
                statements["insert"],
                {
                    **params,
                    "pair_id": candidate.id,
                    "expires_at": expires_at,
                    "labels_count": candidate.labels_count,
                    "labels_wanted": candidate.labels_wanted,
                },
            ).scalar()
            if lease_id is None:  # filled up between the candidate query and the lock
                rejected.append(candidate.id)
                continue
            return LeaseInfo(
                lease_id=lease_id,
                pair_id=candidate.id,
                experiment_id=experiment_id,
                rater_id=rater_id,
                expires_at=as_utc(expires_at),
                left_segment_id=candidate.left_segment_id,
                right_segment_id=candidate.right_segment_id,
                left_clip_status=candidate.left_clip_status,
                right_clip_status=candidate.right_clip_status,
            )
        return None


def _lease_info(session: Session, lease: Lease, pair: Pair) -> LeaseInfo:
    statuses = dict(
        session.execute(
            select(Segment.id, Segment.clip_status).where(
                Segment.id.in_([pair.left_segment_id, pair.right_segment_id])
            )
        ).all()
    )
    return LeaseInfo(
        lease_id=lease.id,
        pair_id=pair.id,
        experiment_id=lease.experiment_id,
        rater_id=lease.rater_id,
        expires_at=as_utc(lease.expires_at),
        left_segment_id=pair.left_segment_id,
        right_segment_id=pair.right_segment_id,
        left_clip_status=statuses[pair.left_segment_id],
        right_clip_status=statuses[pair.right_segment_id],
    )


def release_lease(session: Session, lease_id: int, rater_id: int) -> None:
    """Hand a leased pair back to the pool before it expires (the rater left or skipped ahead)."""
    with write_transaction(session):
        result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
            delete(Lease).where(Lease.id == lease_id, Lease.rater_id == rater_id)
        )
        if result.rowcount == 0:
            raise NotFound("lease_id", f"no lease {lease_id} held by this rater")


# -------------------------------------------------------------------------------------------------- labels


def _lock_pair(session: Session, pair_id: int) -> Pair:
    query = select(Pair).where(Pair.id == pair_id)
    if not is_sqlite(session):
        query = query.with_for_update()
    pair = session.scalar(query)
    if pair is None:
        raise NotFound("pair_id", f"no pair {pair_id}")
    return pair


@functools.cache
def _label_statements(postgres: bool) -> dict[str, Any]:
    pair_id, rater_id = bindparam("pair_id", type_=Integer()), bindparam("rater_id", type_=Integer())
    key = bindparam("key", type_=String())
    # Everything submit_label checks, in one statement: the pair (locked on PostgreSQL, so labels and leases
    # of one pair take turns), the rater's lease on it, whether the rater labeled it, and the label already
    # stored under the idempotency key.
    state = (
        select(
            Pair.experiment_id,
            Pair.status,
            Pair.labels_count,
            Pair.labels_wanted,
            Lease.id.label("lease_id"),
            Lease.expires_at.label("lease_expires_at"),
            select(Label.id)
            .where(Label.pair_id == pair_id, Label.rater_id == rater_id)
            .scalar_subquery()
            .label("labeled_id"),
            select(Label.id)
            .where(Label.rater_id == rater_id, Label.idempotency_key == key)
            .scalar_subquery()
            .label("key_label_id"),
        )
        .outerjoin(Lease, and_(Lease.pair_id == Pair.id, Lease.rater_id == rater_id))
        .where(Pair.id == pair_id)
    )
    return {
        "state": state.with_for_update(of=Pair) if postgres else state,
        "label": select(*Label.__table__.columns).where(Label.id == bindparam("label_id")),
        "others_live": select(func.count())
        .select_from(Lease)
        .where(Lease.pair_id == pair_id, Lease.rater_id != rater_id, Lease.expires_at > bindparam("now")),
        "insert": insert(Label).returning(Label.id),
        "drop_lease": delete(Lease).where(Lease.id == bindparam("lease_id")),
        "count": update(Pair)
        .where(Pair.id == pair_id)
        .values(
            labels_count=Pair.labels_count + 1,
            status=case((Pair.labels_count + 1 >= Pair.labels_wanted, "complete"), else_=Pair.status),
        ),
    }


def submit_label(
    session: Session,
    rater_id: int,
    pair_id: int,
    choice: str,
    response_time_ms: int | None = None,
    idempotency_key: str | None = None,
) -> tuple[Label, bool]:
    """Store a rater's answer about a leased pair; the one write path for humans and the synthetic teacher.

    Idempotent: a repeated `idempotency_key` with the same pair and choice returns the stored label.

    Returns:
        (label, created): created is False for a replay. The label is detached from the session.
    """
    if choice not in CHOICES:
        raise Invalid("choice", f"must be one of {', '.join(CHOICES)}")
    statements = _label_statements(not is_sqlite(session))
    keys = {"pair_id": pair_id, "rater_id": rater_id}
    with write_transaction(session):
        connection = session.connection()  # Core execution: skips the ORM's per-statement bookkeeping
        state = connection.execute(statements["state"], {**keys, "key": idempotency_key}).first()
        if state is None:
            raise NotFound("pair_id", f"no pair {pair_id}")
        if state.key_label_id is not None:
            earlier = connection.execute(statements["label"], {"label_id": state.key_label_id}).one()
            if earlier.pair_id != pair_id or earlier.choice != choice:
                raise Conflict("idempotency_key", "already used for a different label")
            return Label(**earlier._mapping), False
        if state.labeled_id is not None:
            raise Conflict("pair_id", "this rater already labeled the pair")
        if state.lease_id is None:
            raise Conflict("pair_id", "the rater does not hold a lease on this pair")
        now = utcnow()
        if as_utc(state.lease_expires_at) <= now:
            # Late but harmless if nobody else took the place meanwhile.
            others = connection.scalar(statements["others_live"], {**keys, "now": now}) or 0
            if state.status != "pending" or state.labels_count + others >= state.labels_wanted:
                raise Conflict("pair_id", "the lease expired and the pair went to another rater")
        values = {
            "experiment_id": state.experiment_id,
            "pair_id": pair_id,
            "rater_id": rater_id,
            "choice": choice,
            "response_time_ms": response_time_ms,
            "idempotency_key": idempotency_key,
            "created_at": now,
        }
        label_id = connection.execute(statements["insert"], values).scalar_one()
        connection.execute(statements["drop_lease"], {"lease_id": state.lease_id})
        connection.execute(statements["count"], keys)
    return Label(id=label_id, **values), True


def _count_label(session: Session, pair: Pair, delta: int) -> None:
    pair.labels_count += delta
    if pair.status != "cancelled":
        pair.status = "complete" if pair.labels_count >= pair.labels_wanted else "pending"


def undo_last_label(
    session: Session, experiment_id: int, rater_id: int, lease_seconds: float
) -> tuple[Label, LeaseInfo]:
    """Delete the rater's latest label in the experiment and lease its pair back to them."""
    with write_transaction(session):
        label = session.scalar(
            select(Label)
            .where(Label.experiment_id == experiment_id, Label.rater_id == rater_id)
            .order_by(Label.id.desc())
            .limit(1)
        )
        if label is None:
            raise NotFound("label", "this rater has no label to undo in the experiment")
        pair = _lock_pair(session, label.pair_id)
        session.delete(label)
        _count_label(session, pair, -1)
        session.execute(delete(Lease).where(Lease.pair_id == pair.id, Lease.rater_id == rater_id))
        now = utcnow()
        lease = Lease(
            pair_id=pair.id,
            rater_id=rater_id,
            experiment_id=experiment_id,
            created_at=now,
            expires_at=now + timedelta(seconds=lease_seconds),
        )
        session.add(lease)
        session.flush()
        info = _lease_info(session, lease, pair)
    return label, info


def labels_after(session: Session, experiment_id: int, after_id: int = 0, limit: int = 10_000) -> list[Label]:
    """Labels with id > after_id, oldest first: the worker trains on everything so far by paging this."""
    return list(
        session.scalars(
            select(Label)
            .where(Label.experiment_id == experiment_id, Label.id > after_id)
            .order_by(Label.id)
            .limit(limit)
        )
    )


EXPORT_FIELDS = (
    "label_id",
    "experiment_id",
    "pair_id",
    "left_segment_id",
    "right_segment_id",
    "rater_id",
    "rater_name",
    "choice",
    "response_time_ms",
    "created_at",
    "idempotency_key",
)


def iter_label_records(
    session: Session, experiment_id: int, batch_size: int = 1000
) -> Iterator[dict[str, Any]]:
    """Every label of the experiment as an export record, in id order, read in keyset-paged batches."""
    after_id = 0
    while True:
        rows = session.execute(
            select(Label, Pair.left_segment_id, Pair.right_segment_id, Rater.name)
            .join(Pair, Pair.id == Label.pair_id)
            .join(Rater, Rater.id == Label.rater_id)
            .where(Label.experiment_id == experiment_id, Label.id > after_id)
            .order_by(Label.id)
            .limit(batch_size)
        ).all()
        if not rows:
            return
        for label, left_id, right_id, rater_name in rows:
            yield {
                "label_id": label.id,
                "experiment_id": label.experiment_id,
                "pair_id": label.pair_id,
                "left_segment_id": left_id,
                "right_segment_id": right_id,
                "rater_id": label.rater_id,
                "rater_name": rater_name,
                "choice": label.choice,
                "response_time_ms": label.response_time_ms,
                "created_at": as_utc(label.created_at).isoformat(),
                "idempotency_key": label.idempotency_key,
            }
        after_id = rows[-1][0].id
        session.rollback()  # end the read transaction between pages so long exports hold no snapshot


@dataclass(frozen=True)
class ImportedLabel:
    """One validated line of a JSONL import (see schemas.LabelImport)."""

    line: int
    pair_id: int
    choice: str
    rater_id: int | None
    rater_name: str | None
    response_time_ms: int | None
    created_at: datetime | None
    idempotency_key: str | None


def import_labels(session: Session, experiment_id: int, records: Iterable[ImportedLabel]) -> int:
    """Store labels from an export (no leases needed); all or nothing. Identical re-imports are skipped.

    Returns:
        The number of labels stored.
    """
    get_experiment(session, experiment_id)
    records = list(records)
    imported = 0
    with write_transaction(session):
        raters_by_name: dict[str, int] = {}
        for record in records:
            where = f"line {record.line}"
            pair = _lock_pair_or_none(session, record.pair_id)
            if pair is None or pair.experiment_id != experiment_id:
                raise NotFound(f"{where}.pair_id", f"no pair {record.pair_id} in experiment {experiment_id}")
            rater_id = record.rater_id
            if rater_id is not None:
                if session.get(Rater, rater_id) is None:
                    raise NotFound(f"{where}.rater_id", f"no rater {rater_id}")
            else:
                assert record.rater_name is not None
                rater_id = raters_by_name.get(record.rater_name) or _rater_id_by_name(
                    session, record.rater_name
                )
                raters_by_name[record.rater_name] = rater_id
            existing = session.scalar(
                select(Label).where(Label.pair_id == pair.id, Label.rater_id == rater_id)
            )
            if existing is not None:
                if existing.choice != record.choice:
                    raise Conflict(
                        f"{where}.choice", f"rater {rater_id} already gave pair {pair.id} another answer"
                    )
                continue
            session.add(
                Label(
                    experiment_id=experiment_id,
                    pair_id=pair.id,
                    rater_id=rater_id,
                    choice=record.choice,
                    response_time_ms=record.response_time_ms,
                    idempotency_key=record.idempotency_key,
                    created_at=record.created_at or utcnow(),
                )
            )
            _count_label(session, pair, +1)
            try:
                session.flush()
            except IntegrityError as error:
                raise Conflict(f"{where}.idempotency_key", "already used by this rater") from error
            imported += 1
    return imported


def _lock_pair_or_none(session: Session, pair_id: int) -> Pair | None:
    try:
        return _lock_pair(session, pair_id)
    except NotFound:
        return None


def _rater_id_by_name(session: Session, name: str) -> int:
    rater_id = session.scalar(select(Rater.id).where(Rater.name == name).order_by(Rater.id).limit(1))
    if rater_id is None:
        rater = Rater(name=name, kind="human", token_hash=hash_token(new_token()), active=True)
        session.add(rater)
        session.flush()
        rater_id = rater.id
    return rater_id


# -------------------------------------------------------------------------------------------------- raters


def create_rater(
    session: Session, name: str, experiment_ids: Sequence[int] = (), kind: str = "human"
) -> tuple[Rater, str]:
    """Create a rater invited to `experiment_ids`; returns it and its token (shown once, stored hashed)."""
    for i, experiment_id in enumerate(experiment_ids):
        if session.get(Experiment, experiment_id) is None:
            raise NotFound(f"experiment_ids[{i}]", f"no experiment {experiment_id}")
    token = new_token()
    with write_transaction(session):
        rater = Rater(name=name, kind=kind, token_hash=hash_token(token), active=True)
        session.add(rater)
        session.flush()
        session.add_all(
            RaterExperiment(rater_id=rater.id, experiment_id=e) for e in dict.fromkeys(experiment_ids)
        )
    return rater, token


def invite_rater(session: Session, rater_id: int, experiment_id: int) -> None:
    """Let an existing rater label another experiment (no-op if already invited)."""
    get_experiment(session, experiment_id)
    with write_transaction(session):
        if session.get(Rater, rater_id) is None:
            raise NotFound("rater_id", f"no rater {rater_id}")
        if session.get(RaterExperiment, (rater_id, experiment_id)) is None:
            session.add(RaterExperiment(rater_id=rater_id, experiment_id=experiment_id))


def rater_for_token(session: Session, token: str) -> Rater | None:
    """The active rater a bearer token belongs to, or None."""
    return session.scalar(select(Rater).where(Rater.token_hash == hash_token(token), Rater.active.is_(True)))


def rater_id_for_token(session: Session, token: str) -> int | None:
    """The id of the active rater a bearer token belongs to, or None (no ORM object: nothing to expire)."""
    query = select(Rater.id).where(Rater.token_hash == hash_token(token), Rater.active.is_(True))
    return session.scalar(query)


def is_invited(session: Session, rater_id: int, experiment_id: int) -> bool:
    return session.get(RaterExperiment, (rater_id, experiment_id)) is not None


def rater_experiment_ids(session: Session, rater_id: int) -> list[int]:
    return list(
        session.scalars(
            select(RaterExperiment.experiment_id)
            .where(RaterExperiment.rater_id == rater_id)
            .order_by(RaterExperiment.experiment_id)
        )
    )


def list_raters(session: Session, experiment_id: int | None = None) -> list[Rater]:
    query = select(Rater).order_by(Rater.id)
    if experiment_id is not None:
        query = query.join(RaterExperiment).where(RaterExperiment.experiment_id == experiment_id)
    return list(session.scalars(query))


def ensure_admin_token(session: Session, configured: str | None) -> tuple[str, str | None]:
    """The admin token's hash, creating and storing a token at first start when none is configured.

    Returns:
        (hash to check requests against, the new plaintext token if one was generated just now, else None).
    """
    if configured:
        return hash_token(configured), None
    stored = session.get(AppSecret, ADMIN_TOKEN_SECRET)
    if stored is not None:
        value_hash = stored.value_hash
        session.rollback()
        return value_hash, None
    token = new_token()
    with write_transaction(session):
        if session.get(AppSecret, ADMIN_TOKEN_SECRET) is not None:  # another process won the race
            return session.get(AppSecret, ADMIN_TOKEN_SECRET).value_hash, None  # type: ignore[union-attr]
        session.add(AppSecret(name=ADMIN_TOKEN_SECRET, value_hash=hash_token(token)))
    return hash_token(token), token


# ------------------------------------------------------------------------------------ metrics, checkpoints


def record_metrics(session: Session, experiment_id: int, step: int, values: dict[str, float]) -> None:
    """Append one point per key (namespaced like `reward/accuracy`) at `step`."""
    bad = [key for key, value in values.items() if not np.isfinite(value)]
    if bad:
        raise Invalid(f"values.{bad[0]}", "must be a finite number")
    get_experiment(session, experiment_id)
    with write_transaction(session):
        now = utcnow()
        session.add_all(
            MetricPoint(experiment_id=experiment_id, key=key, step=step, value=float(value), created_at=now)
            for key, value in values.items()
        )


def metric_series(
    session: Session, experiment_id: int, keys: Sequence[str] | None = None, after_step: int | None = None
) -> dict[str, list[tuple[int, float]]]:
    """Series by key, as (step, value) in step order; `after_step` gives only newer points (live plots)."""
    query = select(MetricPoint.key, MetricPoint.step, MetricPoint.value).where(
        MetricPoint.experiment_id == experiment_id
    )
    if keys:
        query = query.where(MetricPoint.key.in_(keys))
    if after_step is not None:
        query = query.where(MetricPoint.step > after_step)
    series: dict[str, list[tuple[int, float]]] = {}
    for key, step, value in session.execute(
        query.order_by(MetricPoint.key, MetricPoint.step, MetricPoint.id)
    ):
        series.setdefault(key, []).append((step, value))
    return series


def latest_metrics(session: Session, experiment_id: int) -> dict[str, tuple[int, float]]:
    """The newest point of every series of the experiment."""
    newest = (
        select(MetricPoint.key, func.max(MetricPoint.id).label("id"))
        .where(MetricPoint.experiment_id == experiment_id)
        .group_by(MetricPoint.key)
        .subquery()
    )
    rows = session.execute(
        select(MetricPoint.key, MetricPoint.step, MetricPoint.value).join(
            newest, and_(newest.c.id == MetricPoint.id)
        )
    )
    return {key: (step, value) for key, step, value in rows}


def add_checkpoint(
    session: Session,
    experiment_id: int,
    step: int,
    path: str,
    labels_used: int = 0,
    meta: dict[str, Any] | None = None,
) -> Checkpoint:
    """Record a checkpoint file the worker wrote (write the file first, then call this)."""
    get_experiment(session, experiment_id)
    with write_transaction(session):
        checkpoint = Checkpoint(
            experiment_id=experiment_id, step=step, path=path, labels_used=labels_used, meta=meta or {}
        )
        session.add(checkpoint)
    return checkpoint


def latest_checkpoint(session: Session, experiment_id: int) -> Checkpoint | None:
    return session.scalar(
        select(Checkpoint)
        .where(Checkpoint.experiment_id == experiment_id)
        .order_by(Checkpoint.step.desc(), Checkpoint.id.desc())
        .limit(1)
    )


# ---------------------------------------------------------------------------------------------------- jobs


def enqueue_job(
    session: Session, kind: str, payload: dict[str, Any], experiment_id: int | None = None, priority: int = 0
) -> Job:
    with write_transaction(session):
        job = Job(kind=kind, payload=payload, experiment_id=experiment_id, priority=priority)
        session.add(job)
    return job


def get_job(session: Session, job_id: int) -> Job:
    return _get_or_not_found(session, Job, job_id, "job")


def claim_jobs(
    session: Session, worker_id: str, kinds: Sequence[str], limit: int = 1, lease_seconds: float = 300.0
) -> list[Job]:
    """Claim up to `limit` queued jobs (or running ones whose claim expired) for `worker_id`.

    PostgreSQL: FOR UPDATE SKIP LOCKED, so concurrent workers never claim the same job; SQLite: BEGIN
    IMMEDIATE. Finish each with `complete_job` / `fail_job`; renew long ones with `heartbeat_job`.
    """
    with write_transaction(session):
        now = utcnow()
        query = (
            select(Job)
            .where(
                Job.kind.in_(kinds),
                (Job.status == "queued") | ((Job.status == "running") & (Job.lease_expires_at < now)),
            )
            .order_by(Job.priority.desc(), Job.id)
            .limit(limit)
        )
        if not is_sqlite(session):
            query = query.with_for_update(skip_locked=True)
        jobs = list(session.scalars(query))
        for job in jobs:
            job.status = "running"
            job.claimed_by = worker_id
            job.attempts += 1
            job.lease_expires_at = now + timedelta(seconds=lease_seconds)
    return jobs


def heartbeat_job(session: Session, job_id: int, worker_id: str, lease_seconds: float = 300.0) -> bool:
    """Extend a claim; False if the job is no longer this worker's (it expired and was taken over)."""
    with write_transaction(session):
        result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
            update(Job)
            .where(Job.id == job_id, Job.claimed_by == worker_id, Job.status == "running")
            .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
        )
        return result.rowcount == 1


def complete_job(session: Session, job_id: int, worker_id: str, result: dict[str, Any] | None = None) -> bool:
    """Mark a claimed job done; False if another worker holds it now."""
    with write_transaction(session):
        outcome: CursorResult[Any] = session.execute(  # type: ignore[assignment]
            update(Job)
            .where(Job.id == job_id, Job.claimed_by == worker_id, Job.status == "running")
            .values(status="done", result=result, finished_at=utcnow(), lease_expires_at=None)
        )
        return outcome.rowcount == 1


def fail_job(session: Session, job_id: int, worker_id: str, error: str) -> bool:
    """Record a failure; the job is queued again until it has used `max_attempts`."""
    with write_transaction(session):
        job = session.get(Job, job_id)
        if job is None or job.claimed_by != worker_id or job.status != "running":
            return False
        job.error = error[-4000:]
        job.lease_expires_at = None
        if job.attempts >= job.max_attempts:
            job.status = "failed"
            job.finished_at = utcnow()
        else:
            job.status = "queued"
        return True


# ------------------------------------------------------------------------------------- the training worker


def queue_segment_clips(session: Session, experiment_id: int, segment_ids: Sequence[int]) -> list[int]:
    """Queue a render job per segment that the worker renders from the segment's own observations.

    For segments stored without a render spec (the worker's own rollouts): the clip job restores the env
    state from each observation. Returns the job ids.
    """
    with write_transaction(session):
        jobs = [
            Job(kind=RENDER_CLIP_JOB, experiment_id=experiment_id, payload={"segment_id": i, "from_obs": True})
            for i in segment_ids
        ]
        session.add_all(jobs)
        session.execute(update(Segment).where(Segment.id.in_(segment_ids)).values(clip_status="queued"))
    return [job.id for job in jobs]


def count_clips_queued(session: Session, segment_ids: Sequence[int]) -> int:
    """How many of these segments still wait for their clip (neither ready nor failed)."""
    query = select(func.count()).where(Segment.id.in_(segment_ids), Segment.clip_status == "queued")
    return session.scalar(query) or 0


def pending_pairs(session: Session, experiment_id: int) -> list[Pair]:
    """Pairs still waiting for labels, oldest first."""
    return list(
        session.scalars(
            select(Pair).where(Pair.experiment_id == experiment_id, Pair.status == "pending").order_by(Pair.id)
        )
    )


def count_pairs(session: Session, experiment_id: int) -> int:
    """Pairs asked about so far (pending or complete; cancelled ones do not count)."""
    query = select(func.count()).where(Pair.experiment_id == experiment_id, Pair.status != "cancelled")
    return session.scalar(query) or 0


def leased_pair_ids(session: Session, experiment_id: int, rater_id: int) -> list[int]:
    """Pending pairs the rater holds a lease on (live or expired): a restarted oracle answers these first."""
    query = (
        select(Lease.pair_id)
        .join(Pair, Pair.id == Lease.pair_id)
        .where(Lease.experiment_id == experiment_id, Lease.rater_id == rater_id, Pair.status == "pending")
        .order_by(Lease.pair_id)
    )
    return list(session.scalars(query))


def oracle_rater_id(session: Session, experiment_id: int) -> int:
    """The experiment's synthetic-teacher rater (kind "oracle"), created on first use."""
    query = (
        select(Rater.id)
        .join(RaterExperiment, RaterExperiment.rater_id == Rater.id)
        .where(RaterExperiment.experiment_id == experiment_id, Rater.kind == "oracle")
        .order_by(Rater.id)
        .limit(1)
    )
    rater_id = session.scalar(query)
    if rater_id is None:
        rater, _token = create_rater(session, f"oracle-{experiment_id}", [experiment_id], kind="oracle")
        rater_id = rater.id
    return rater_id


def experiments_needing_work(session: Session, now: datetime | None = None) -> list[Experiment]:
    """Worker-run experiments (config has "run") not done or paused whose owner lease is free or expired."""
    now = now or utcnow()
    query = (
        select(Experiment)
        .where(
            Experiment.status.in_(("created", "running")),
            Experiment.owner_worker.is_(None) | (Experiment.owner_expires_at < now),
        )
        .order_by(Experiment.id)
    )
    return [e for e in session.scalars(query) if isinstance(e.config, dict) and "run" in e.config]

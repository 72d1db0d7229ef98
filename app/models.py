"""The database schema as SQLAlchemy 2 typed mappings; Alembic migrations are generated from this metadata.

Arrays (observations, actions, rewards) are stored compactly as raw C-order bytes next to their shape and
dtype; `app.crud.arrays` packs and unpacks them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from app.vocabulary import (
    CHOICES,
    CLIP_STATUSES,
    EXPERIMENT_STATUSES,
    JOB_STATUSES,
    PAIR_STATUSES,
    RATER_KINDS,
    TEACHER_MODES,
    Choice,
    ClipStatus,
    ExperimentStatus,
    JobStatus,
    PairStatus,
    RaterKind,
    TeacherMode,
)

# Stable constraint names, so migrations can alter them on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}



def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JSON, list[int]: JSON}


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Experiment(Base):
    """One RLHF run: an environment, who answers its pairs, what raters are told, and its budgets."""

    __tablename__ = "experiments"
    __table_args__ = (
        CheckConstraint(_in("teacher_mode", TEACHER_MODES), name="teacher_mode"),
        CheckConstraint(_in("status", EXPERIMENT_STATUSES), name="status"),
        CheckConstraint("labels_per_pair >= 1", name="labels_per_pair"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    env_id: Mapped[str] = mapped_column(String(200))
    teacher_mode: Mapped[TeacherMode] = mapped_column(String(16), default="human")
    status: Mapped[ExperimentStatus] = mapped_column(String(16), default="created")
    instructions: Mapped[str] = mapped_column(Text, default="")
    labels_per_pair: Mapped[int] = mapped_column(Integer, default=1)
    label_budget: Mapped[int | None] = mapped_column(Integer)
    timestep_budget: Mapped[int | None] = mapped_column(BigInteger)
    # Mixed mode: the synthetic teacher answers a pair no human answered within this many seconds.
    human_timeout_seconds: Mapped[float | None] = mapped_column(Float)
    # The spaces segments are checked against: obs (L, *obs_shape), actions (L, *action_shape).
    obs_shape: Mapped[list[int]] = mapped_column(JSON)
    obs_dtype: Mapped[str] = mapped_column(String(16), default="float32")
    action_shape: Mapped[list[int]] = mapped_column(JSON)
    action_dtype: Mapped[str] = mapped_column(String(16), default="int64")
    num_actions: Mapped[int | None] = mapped_column(Integer)  # discrete spaces: actions in [0, num_actions)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # training hyperparameters, as run
    # Why the worker could not run it (status "failed"): an env that does not import, unsupported spaces.
    error: Mapped[str | None] = mapped_column(Text)
    # The worker that owns the experiment, until owner_expires_at; its heartbeats push that time on, and once it
    # passes, another worker may take the experiment over.
    owner_worker: Mapped[str | None] = mapped_column(String(200))
    owner_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Clip(Base):
    """An encoded MP4 (moov atom first) and its poster, named by the hash of what was rendered."""

    __tablename__ = "clips"

    content_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    video_path: Mapped[str] = mapped_column(String(500))  # relative to the clip folder
    poster_path: Mapped[str] = mapped_column(String(500))
    frame_count: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    fps: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Segment(Base):
    """A fixed-length piece of one episode (worker.types.Segment) with where it came from and its clip."""

    __tablename__ = "segments"
    __table_args__ = (CheckConstraint(_in("clip_status", CLIP_STATUSES), name="clip_status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), index=True)
    length: Mapped[int] = mapped_column(Integer)
    obs: Mapped[bytes] = mapped_column(LargeBinary)
    obs_shape: Mapped[list[int]] = mapped_column(JSON)
    obs_dtype: Mapped[str] = mapped_column(String(16))
    actions: Mapped[bytes] = mapped_column(LargeBinary)
    actions_shape: Mapped[list[int]] = mapped_column(JSON)
    actions_dtype: Mapped[str] = mapped_column(String(16))
    true_rewards: Mapped[bytes | None] = mapped_column(LargeBinary)  # float32 (L,); NULL when unknown
    ended: Mapped[bytes] = mapped_column(LargeBinary)  # bool (L,)
    true_return: Mapped[float | None] = mapped_column(Float)
    env_id: Mapped[str] = mapped_column(String(200))
    seed: Mapped[int | None] = mapped_column(BigInteger)
    render_spec: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    policy_step: Mapped[int | None] = mapped_column(BigInteger)  # timesteps trained when it was collected
    clip_status: Mapped[ClipStatus] = mapped_column(String(16), default="none")
    clip_hash: Mapped[str | None] = mapped_column(ForeignKey("clips.content_hash"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    clip: Mapped[Clip | None] = relationship(lazy="joined")


class Pair(Base):
    """Two segments of one experiment to compare; `labels_count` counts the answers given so far."""

    __tablename__ = "pairs"
    __table_args__ = (
        CheckConstraint(_in("status", PAIR_STATUSES), name="status"),
        CheckConstraint("left_segment_id <> right_segment_id", name="distinct_segments"),
        CheckConstraint("labels_wanted >= 1", name="labels_wanted"),
        Index("ix_pairs_queue", "experiment_id", "status", "priority", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    left_segment_id: Mapped[int] = mapped_column(ForeignKey("segments.id", ondelete="CASCADE"), index=True)
    right_segment_id: Mapped[int] = mapped_column(ForeignKey("segments.id", ondelete="CASCADE"), index=True)
    status: Mapped[PairStatus] = mapped_column(String(16), default="pending")
    priority: Mapped[float] = mapped_column(Float, default=0.0)
    acquisition_score: Mapped[float | None] = mapped_column(Float)
    labels_wanted: Mapped[int] = mapped_column(Integer, default=1)
    labels_count: Mapped[int] = mapped_column(Integer, default=0)
    source: Mapped[str] = mapped_column(String(32), default="api")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Rater(Base):
    """Someone (or the synthetic teacher) who answers pairs; signs in with a token stored as its SHA-256."""

    __tablename__ = "raters"
    __table_args__ = (CheckConstraint(_in("kind", RATER_KINDS), name="kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[RaterKind] = mapped_column(String(16), default="human")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RaterExperiment(Base):
    """An invitation: the rater may lease and label pairs of the experiment."""

    __tablename__ = "rater_experiments"

    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id", ondelete="CASCADE"), primary_key=True)
    experiment_id: Mapped[int] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Lease(Base):
    """A rater holds a pair until `expires_at`; an expired lease no longer counts and the pair returns."""

    __tablename__ = "leases"
    __table_args__ = (
        UniqueConstraint("pair_id", "rater_id"),
        Index("ix_leases_pair_expiry", "pair_id", "expires_at"),
        # A rater's live leases in an experiment (the lease's "held" check), as a plain index scan: the leases
        # table churns (a label deletes its lease), and a bitmap scan over the rater's or the experiment's entries
        # revisits every dead row until vacuum, where an index scan marks them dead once.
        Index("ix_leases_rater_expiry", "rater_id", "experiment_id", "expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    pair_id: Mapped[int] = mapped_column(ForeignKey("pairs.id", ondelete="CASCADE"))
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id", ondelete="CASCADE"))
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class Label(Base):
    """One answer about one pair. A rater labels a pair at most once; an idempotency key stores one label."""

    __tablename__ = "labels"
    __table_args__ = (
        CheckConstraint(_in("choice", CHOICES), name="choice"),
        UniqueConstraint("pair_id", "rater_id"),
        UniqueConstraint("rater_id", "idempotency_key"),
        Index("ix_labels_experiment_id_id", "experiment_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    pair_id: Mapped[int] = mapped_column(ForeignKey("pairs.id", ondelete="CASCADE"))
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id", ondelete="CASCADE"))
    choice: Mapped[Choice] = mapped_column(String(8))
    response_time_ms: Mapped[int | None] = mapped_column(Integer)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Checkpoint(Base):
    """A saved training state (policy, reward model, optimizers, RNG) the worker can resume from."""

    __tablename__ = "checkpoints"
    __table_args__ = (Index("ix_checkpoints_experiment_id_step", "experiment_id", "step"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(BigInteger)  # environment timesteps trained
    labels_used: Mapped[int] = mapped_column(Integer, default=0)
    path: Mapped[str] = mapped_column(String(500))
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MetricPoint(Base):
    """One value of a namespaced metric series (`reward/val_accuracy`, `env/true_return`) at a step."""

    __tablename__ = "metric_points"
    __table_args__ = (Index("ix_metric_points_series", "experiment_id", "key", "step"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(200))
    step: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    """Work for a worker process (render a clip, choose pairs, train); claimed under a row lock."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(_in("status", JOB_STATUSES), name="status"),
        Index("ix_jobs_claim", "status", "kind", "priority", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    experiment_id: Mapped[int | None] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), index=True
    )
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[JobStatus] = mapped_column(String(16), default="queued")
    priority: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None]
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class AppSecret(Base):
    """Hashed server secrets, e.g. the admin token generated at first start."""

    __tablename__ = "app_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

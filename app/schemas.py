"""Request and response bodies of the REST API (pydantic v2), with the examples shown in /openapi.json.

Array fields arrive as nested JSON lists; `app.crud.arrays` checks their shapes and dtypes against the
experiment's declared spaces. Every float field rejects NaN and infinity.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.vocabulary import Choice, ClipStatus, ExperimentStatus, JobStatus, PairStatus, RaterKind, TeacherMode

DType = Literal["float32", "float64", "int64", "int32", "uint8"]

Name = Field(min_length=1, max_length=200)


class StrictModel(BaseModel):
    """Unknown fields are errors (a typo should not be silently dropped); NaN/inf are rejected."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ExperimentCreate(StrictModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "cartpole-demo",
                    "env_id": "CartPole-v1",
                    "teacher_mode": "human",
                    "instructions": "Prefer the clip where the pole stays upright and the cart central.",
                    "labels_per_pair": 1,
                    "label_budget": 500,
                    "obs_shape": [4],
                    "obs_dtype": "float32",
                    "action_shape": [],
                    "action_dtype": "int64",
                    "num_actions": 2,
                }
            ]
        }
    )

    name: str = Field(min_length=1, max_length=200)
    env_id: str = Field(min_length=1, max_length=200)
    teacher_mode: TeacherMode = "human"
    instructions: str = Field(default="", max_length=10_000)
    labels_per_pair: int = Field(default=1, ge=1, le=100)
    label_budget: int | None = Field(default=None, ge=0)
    timestep_budget: int | None = Field(default=None, ge=0)
    human_timeout_seconds: float | None = Field(default=None, gt=0)
    obs_shape: list[int] = Field(min_length=1, max_length=4, description="Shape of one observation.")
    obs_dtype: Literal["float32", "float64", "uint8"] = "float32"
    action_shape: list[int] = Field(
        default_factory=list, max_length=4, description="[] for discrete actions."
    )
    action_dtype: Literal["int64", "float32"] = "int64"
    num_actions: int | None = Field(default=None, ge=1, description="Discrete spaces: actions lie in [0, n).")
    config: dict[str, Any] = Field(default_factory=dict)


class ExperimentUpdate(StrictModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"teacher_mode": "mixed", "instructions": "Prefer the pole upright."}]
        }
    )

    teacher_mode: TeacherMode | None = None
    instructions: str | None = Field(default=None, max_length=10_000)
    status: ExperimentStatus | None = None
    label_budget: int | None = Field(default=None, ge=0)
    timestep_budget: int | None = Field(default=None, ge=0)
    human_timeout_seconds: float | None = Field(default=None, gt=0)


class ExperimentCounts(BaseModel):
    segments: int
    pairs_pending: int
    pairs_complete: int
    labels: int
    raters: int


class MetricValue(BaseModel):
    step: int
    value: float


class ExperimentOut(BaseModel):
    id: int
    name: str
    env_id: str
    teacher_mode: TeacherMode
    status: ExperimentStatus
    instructions: str
    labels_per_pair: int
    label_budget: int | None
    timestep_budget: int | None
    human_timeout_seconds: float | None
    obs_shape: list[int]
    obs_dtype: str
    action_shape: list[int]
    action_dtype: str
    num_actions: int | None
    config: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    counts: ExperimentCounts | None = None
    latest_metrics: dict[str, MetricValue] | None = None


class RenderSpec(StrictModel):
    """Replay recipe for the worker: env.reset(seed=seed), then `actions`; frames kept from `first_frame`."""

    env_id: str | None = Field(default=None, description="Defaults to the experiment's env_id.")
    seed: int = Field(ge=0, le=2**63 - 1)
    actions: list[Any] | None = Field(
        default=None, description="Actions from the reset on; defaults to the segment's own actions."
    )
    first_frame: int = Field(default=0, ge=0)
    fps: int = Field(default=30, ge=1, le=120)
    start_state: list[float] | None = Field(
        default=None,
        max_length=10_000,
        description="MuJoCo envs: qpos then qvel set right after the reset, so the replay starts mid-episode.",
    )


class SegmentIn(StrictModel):
    """One segment: obs (L, *obs_shape), actions (L, *action_shape), true_rewards and ended (L,)."""

    obs: list[Any] = Field(min_length=1, max_length=10_000)
    actions: list[Any] = Field(min_length=1, max_length=10_000)
    true_rewards: list[float] | None = Field(default=None, description="Omit when unknown (human raters).")
    ended: list[bool] | None = Field(
        default=None, description="Absorbing-state padding; all False if omitted."
    )
    env_id: str | None = Field(default=None, max_length=200)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    policy_step: int | None = Field(default=None, ge=0)
    render: RenderSpec | None = Field(default=None, description="Queue a clip rendered by the worker.")


class SegmentsCreate(StrictModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "segments": [
                        {
                            "obs": [[0.01, 0.0, -0.02, 0.0], [0.012, 0.19, -0.021, -0.3]],
                            "actions": [1, 0],
                            "true_rewards": [1.0, 1.0],
                            "ended": [False, False],
                            "seed": 7,
                            "render": {"seed": 7},
                        }
                    ]
                }
            ]
        }
    )

    segments: list[SegmentIn] = Field(min_length=1, max_length=1000)


class ClipOut(BaseModel):
    content_hash: str
    frame_count: int
    width: int
    height: int
    fps: int
    size_bytes: int


class SegmentOut(BaseModel):
    id: int
    experiment_id: int
    length: int
    env_id: str
    seed: int | None
    policy_step: int | None
    true_return: float | None
    clip_status: ClipStatus
    clip: ClipOut | None = None
    clip_url: str
    poster_url: str
    created_at: datetime
    obs: list[Any] | None = None
    actions: list[Any] | None = None
    true_rewards: list[float] | None = None
    ended: list[bool] | None = None


class SegmentsCreated(BaseModel):
    segment_ids: list[int]
    render_job_ids: list[int]


class PairIn(StrictModel):
    left_segment_id: int = Field(ge=1)
    right_segment_id: int = Field(ge=1)
    priority: float = 0.0
    acquisition_score: float | None = None
    labels_wanted: int | None = Field(default=None, ge=1, le=100, description="Default: the experiment's.")


class PairsCreate(StrictModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"pairs": [{"left_segment_id": 1, "right_segment_id": 2, "priority": 0.5}]}]
        }
    )

    pairs: list[PairIn] = Field(min_length=1, max_length=10_000)


class PairOut(BaseModel):
    id: int
    experiment_id: int
    left_segment_id: int
    right_segment_id: int
    status: PairStatus
    priority: float
    acquisition_score: float | None
    labels_wanted: int
    labels_count: int
    source: str
    created_at: datetime


class PairsCreated(BaseModel):
    pair_ids: list[int]


class JobOut(BaseModel):
    id: int
    kind: str
    experiment_id: int | None
    status: JobStatus
    payload: dict[str, Any]
    attempts: int
    result: dict[str, Any] | None
    error: str | None
    created_at: datetime
    finished_at: datetime | None


class SegmentRef(BaseModel):
    id: int
    clip_url: str
    poster_url: str
    clip_status: ClipStatus


class LeaseOut(BaseModel):
    lease_id: int
    pair_id: int
    experiment_id: int
    expires_at: datetime
    left: SegmentRef
    right: SegmentRef


class LabelCreate(StrictModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"pair_id": 12, "choice": "left", "response_time_ms": 2140, "idempotency_key": "b7f3c0de-1"}
            ]
        }
    )

    pair_id: int = Field(ge=1)
    choice: Choice
    response_time_ms: int | None = Field(default=None, ge=0, le=24 * 3600 * 1000)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)


class LabelOut(BaseModel):
    id: int
    experiment_id: int
    pair_id: int
    rater_id: int
    choice: Choice
    response_time_ms: int | None
    idempotency_key: str | None
    created_at: datetime


class UndoOut(BaseModel):
    """The label removed, and the fresh lease on its pair so the rater can answer again."""

    label: LabelOut
    lease: LeaseOut


class InviteCreate(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "alice", "experiment_ids": [1]}]})

    name: str = Field(min_length=1, max_length=200)
    experiment_ids: list[int] = Field(default_factory=list, max_length=1000)
    kind: RaterKind = "human"


class InviteOut(BaseModel):
    rater_id: int
    name: str
    kind: RaterKind
    token: str = Field(description="Shown once; only its hash is stored.")
    invite_url: str
    experiment_ids: list[int]


class RaterOut(BaseModel):
    id: int
    name: str
    kind: RaterKind
    active: bool
    experiment_ids: list[int]
    created_at: datetime


class MetricsRecord(StrictModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"step": 20480, "values": {"env/true_return": 212.0, "reward/val_accuracy": 0.91}}]
        }
    )

    step: int = Field(ge=0)
    values: dict[str, float] = Field(min_length=1, max_length=1000)


class ImportResult(BaseModel):
    imported: int


class Health(BaseModel):
    status: Literal["ok"]
    database: str


class PairsWaiting(BaseModel):
    """Pending pairs of the experiment the calling rater has not labeled (those the rater holds included)."""

    pairs_waiting: int


class AgreementOut(BaseModel):
    """How many compared answers matched; `rate` is null when nothing could be compared."""

    matches: int
    compared: int
    rate: float | None


class RaterAgreementOut(BaseModel):
    rater_id: int
    name: str
    kind: RaterKind
    labels: int
    skips: int
    mean_response_ms: float | None
    with_others: AgreementOut
    with_teacher: AgreementOut


class LiveExperiment(BaseModel):
    id: int
    name: str
    env_id: str
    status: ExperimentStatus
    teacher_mode: TeacherMode
    labels_per_pair: int
    label_budget: int | None
    owner_worker: str | None
    latest_checkpoint_step: int | None


class ExperimentLive(BaseModel):
    """What the admin's experiment page shows and polls: counts, agreement and the plotted series."""

    experiment: LiveExperiment
    counts: ExperimentCounts
    raters: list[RaterAgreementOut]
    between_raters: AgreementOut
    with_teacher: AgreementOut
    pairs_multiply_labeled: int
    series: dict[str, list[tuple[int, float]]] = Field(description="Plotted series by key, as [step, value].")

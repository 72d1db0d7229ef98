"""Request and response bodies of the REST API (pydantic v2), with the examples shown in /openapi.json.

Array fields arrive as nested JSON lists; `app.crud.arrays` checks their shapes and dtypes against the
experiment's declared spaces. Every float field rejects NaN and infinity.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from app.vocabulary import Choice, ClipStatus, ExperimentStatus, JobStatus, PairStatus, RaterKind, TeacherMode

DType = Literal["float32", "float64", "int64", "int32", "uint8"]

# Bounds of the columns values are stored in, so that out-of-range input is a 422 naming the field and not a
# driver error: PostgreSQL's INTEGER (ids, most counts) and BIGINT (steps, seeds); SQLite's are all 64-bit.
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
Id = Annotated[int, Field(ge=1, le=INT32_MAX)]
Count = Annotated[int, Field(ge=0, le=INT32_MAX)]
Step = Annotated[int, Field(ge=0, le=INT64_MAX)]
Size = Annotated[int, Field(ge=1, le=INT32_MAX)]  # a dimension of a space, a number of actions
# PostgreSQL text cannot hold the NUL character; every stored string refuses it.
NO_NUL = r"^[^\x00]*$"
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NO_NUL)]
Key = Name  # idempotency keys, metric keys: the String(200) columns
LongText = Annotated[str, StringConstraints(max_length=10_000, pattern=NO_NUL)]
# A day: longer has no use, and far larger values overflow the worker's date arithmetic.
Seconds = Annotated[float, Field(gt=0, le=24 * 3600)]
ResponseTimeMs = Annotated[int, Field(ge=0, le=24 * 3600 * 1000)]


class StrictModel(BaseModel):
    """A request body: unknown fields are errors (a typo should not be silently dropped), NaN/inf are rejected,
    and values are not coerced (false is no 0, "5" no 5)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


class ErrorOut(BaseModel):
    """Every error answer. `detail` reads "field: message"; `field` names the input at fault (null when the
    error concerns no input, e.g. an unknown route)."""

    detail: str
    field: str | None


class FieldError(BaseModel):
    field: str
    message: str
    type: str


class ValidationErrorOut(ErrorOut):
    """422: the first problem in `detail` and `field`, and up to 20 problems in `errors`."""

    errors: list[FieldError]


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

    name: Name
    env_id: Name
    teacher_mode: TeacherMode = "human"
    instructions: LongText = ""
    labels_per_pair: int = Field(default=1, ge=1, le=100)
    label_budget: Count | None = None
    timestep_budget: Step | None = None
    human_timeout_seconds: Seconds | None = None
    obs_shape: list[Size] = Field(min_length=1, max_length=4, description="Shape of one observation.")
    obs_dtype: Literal["float32", "float64", "uint8"] = "float32"
    action_shape: list[Size] = Field(default_factory=list, max_length=4, description="[] for discrete actions.")
    action_dtype: Literal["int64", "float32"] = "int64"
    num_actions: Size | None = Field(default=None, description="Discrete spaces: actions lie in [0, n).")
    config: dict[str, Any] = Field(default_factory=dict)

    @field_validator("config")
    @classmethod
    def _finite_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        # JSON parsing accepts a bare NaN; the config is stored as JSON, where PostgreSQL refuses it.
        if not _all_finite(config):
            raise ValueError("must not contain NaN or infinity")
        return config


def _all_finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_all_finite(item) for item in value.values())
    if isinstance(value, list):
        return all(_all_finite(item) for item in value)
    return True


# The default of an update field that takes no null: None only stands for "not sent" (read the fields with
# `model_dump(exclude_unset=True)`), so the schema shows no default.
def _drop_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


NOT_SENT: Any = Field(default=None, json_schema_extra=_drop_default)


class ExperimentUpdate(StrictModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"teacher_mode": "mixed", "instructions": "Prefer the pole upright."}]
        }
    )

    # Only the fields sent change; null clears a budget or the timeout, and is refused for the rest.
    teacher_mode: TeacherMode = NOT_SENT
    instructions: LongText = NOT_SENT
    status: ExperimentStatus = NOT_SENT
    label_budget: Count | None = None
    timestep_budget: Step | None = None
    human_timeout_seconds: Seconds | None = None


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
    error: str | None = Field(description="Status failed: why the worker could not run the experiment.")
    created_at: datetime
    updated_at: datetime
    counts: ExperimentCounts | None = None
    latest_metrics: dict[str, MetricValue] | None = None


class RenderSpec(StrictModel):
    """Replay recipe for the worker: env.reset(seed=seed), then `actions`; frames kept from `first_frame`."""

    env_id: Name | None = Field(default=None, description="Defaults to the experiment's env_id.")
    seed: Step
    actions: list[Any] | None = Field(
        default=None, description="Actions from the reset on; defaults to the segment's own actions."
    )
    first_frame: Count = 0
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
    env_id: Name | None = None
    seed: Step | None = None
    policy_step: Step | None = None
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


class SegmentView(BaseModel):
    """A segment as a rater sees it: its clip, and nothing the synthetic teacher answers from (no rewards or
    return, no seed to replay it, no training step that tells the newer policy)."""

    id: int
    experiment_id: int
    length: int
    clip_status: ClipStatus
    clip: ClipOut | None = None
    clip_url: str
    poster_url: str


class SegmentOut(SegmentView):
    """A segment as the admin sees it: where it came from, its true return and, on request, its arrays."""

    env_id: str
    seed: int | None
    policy_step: int | None
    true_return: float | None
    created_at: datetime
    obs: list[Any] | None = None
    actions: list[Any] | None = None
    true_rewards: list[float] | None = None
    ended: list[bool] | None = None


class SegmentsCreated(BaseModel):
    segment_ids: list[int]
    render_job_ids: list[int]


class PairIn(StrictModel):
    left_segment_id: Id
    right_segment_id: Id
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

    pair_id: Id
    choice: Choice
    response_time_ms: ResponseTimeMs | None = None
    idempotency_key: Key | None = None


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

    name: Name
    experiment_ids: list[Id] = Field(default_factory=list, max_length=1000)
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

    step: Step
    values: dict[Key, float] = Field(min_length=1, max_length=1000)


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
    error: str | None


class ExperimentLive(BaseModel):
    """What the admin's experiment page shows and polls: counts, agreement and the plotted series."""

    experiment: LiveExperiment
    counts: ExperimentCounts
    raters: list[RaterAgreementOut]
    between_raters: AgreementOut
    with_teacher: AgreementOut
    pairs_multiply_labeled: int
    series: dict[str, list[tuple[int, float]]] = Field(description="Plotted series by key, as [step, value].")


# ---- the rater's own view (app/api/history.py) and the admin's review (app/api/review.py)


class RaterProgressOut(BaseModel):
    """The calling rater's counters on the labeling page."""

    labels: int = Field(description="Labels this rater stored in the experiment, all sessions together.")
    pairs_waiting: int = Field(description="Pending pairs the rater has not labeled (held ones included).")
    held_by_others: int = Field(description="Of those, pairs other raters' live leases fill for now.")
    holding: int = Field(description="Pairs the rater holds a live lease on.")


class HistoryEntryOut(BaseModel):
    label_id: int
    pair_id: int
    choice: Choice
    created_at: datetime
    left: SegmentRef
    right: SegmentRef
    changeable: bool = Field(description="False once the experiment is done.")


class LabelChange(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"choice": "right"}]})

    choice: Choice


class HeldPairOut(BaseModel):
    lease_id: int
    pair_id: int
    rater_id: int
    rater_name: str
    rater_kind: RaterKind
    created_at: datetime
    expires_at: datetime


class QueueOut(BaseModel):
    """Pending pairs and who holds which of them until when (admin)."""

    pairs_pending: int
    held_by_humans: int = Field(description="Pending pairs a human rater's live lease holds.")
    lease_seconds: float = Field(description="How long a rater holds a leased pair.")
    leases: list[HeldPairOut]


class AnswerOut(BaseModel):
    rater_id: int
    rater_name: str
    choice: Choice


class DisagreementOut(BaseModel):
    pair_id: int
    left: SegmentRef
    right: SegmentRef
    answers: list[AnswerOut]
    teacher_choice: Choice | None = Field(description="A perfect teacher's answer from the true returns.")


class DroppedLabels(BaseModel):
    """The labels removed (keep them: they are gone from the database and from training)."""

    dropped: int
    labels: list[dict[str, Any]]


class EnvOut(BaseModel):
    """An environment the worker can run, with the spaces an experiment on it declares."""

    env_id: str
    obs_shape: list[int]
    action_shape: list[int]
    action_dtype: Literal["int64", "float32"]
    num_actions: int | None
    segment_length: int
    label_budget: int
    renders_clips: bool


class PolicyClipOut(BaseModel):
    """The latest clip of the current policy the worker rendered (after a checkpoint)."""

    step: int
    labels_used: int
    clip_url: str

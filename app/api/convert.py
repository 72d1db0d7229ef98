"""Rows and data-layer results → response models (one place that builds URLs and fixes time zones)."""

from __future__ import annotations

import numpy as np
from sqlalchemy.orm import Session

from app import crud, schemas, stats
from app.models import Experiment, Label, Pair, Segment
from app.vocabulary import ClipStatus

API_PREFIX = "/api/v1"
# Series the experiment page plots, under the names the worker records them.
PLOTTED_SERIES = ("env/true_return", "reward/val_accuracy", "labels/count")


def clip_url(segment_id: int) -> str:
    return f"{API_PREFIX}/segments/{segment_id}/clip"


def poster_url(segment_id: int) -> str:
    return f"{API_PREFIX}/segments/{segment_id}/poster"


def experiment_out(session: Session, experiment: Experiment, detailed: bool) -> schemas.ExperimentOut:
    out = schemas.ExperimentOut.model_validate(
        {
            **{
                name: getattr(experiment, name)
                for name in schemas.ExperimentOut.model_fields
                if hasattr(experiment, name)
            },
            "created_at": crud.as_utc(experiment.created_at),
            "updated_at": crud.as_utc(experiment.updated_at),
        }
    )
    if detailed:
        out.counts = schemas.ExperimentCounts(**crud.experiment_counts(session, experiment_id=experiment.id))
        out.latest_metrics = {
            key: schemas.MetricValue(step=step, value=value)
            for key, (step, value) in crud.latest_metrics(session, experiment_id=experiment.id).items()
        }
    return out


def segment_view(segment: Segment) -> schemas.SegmentView:
    return schemas.SegmentView(
        id=segment.id,
        experiment_id=segment.experiment_id,
        length=segment.length,
        clip_status=segment.clip_status,
        clip=None if segment.clip is None else schemas.ClipOut.model_validate(segment.clip, from_attributes=True),
        clip_url=clip_url(segment.id),
        poster_url=poster_url(segment.id),
    )


def segment_out(segment: Segment, include_arrays: bool) -> schemas.SegmentOut:
    out = schemas.SegmentOut(
        **segment_view(segment).model_dump(),
        env_id=segment.env_id,
        seed=segment.seed,
        policy_step=segment.policy_step,
        true_return=segment.true_return,
        created_at=crud.as_utc(segment.created_at),
    )
    if include_arrays:
        arrays = crud.segment_arrays(segment)
        out.obs = arrays.obs.tolist()
        out.actions = arrays.actions.tolist()
        out.true_rewards = (
            None if segment.true_rewards is None else arrays.true_rewards.astype(np.float64).tolist()
        )
        out.ended = arrays.ended.tolist()
    return out


def pair_out(pair: Pair) -> schemas.PairOut:
    out = schemas.PairOut.model_validate(pair, from_attributes=True)
    out.created_at = crud.as_utc(pair.created_at)
    return out


def segment_ref(segment_id: int, clip_status: ClipStatus) -> schemas.SegmentRef:
    return schemas.SegmentRef(
        id=segment_id,
        clip_url=clip_url(segment_id),
        poster_url=poster_url(segment_id),
        clip_status=clip_status,
    )


def lease_out(info: crud.LeaseInfo) -> schemas.LeaseOut:
    return schemas.LeaseOut(
        lease_id=info.lease_id,
        pair_id=info.pair_id,
        experiment_id=info.experiment_id,
        expires_at=info.expires_at,
        left=segment_ref(info.left_segment_id, info.left_clip_status),
        right=segment_ref(info.right_segment_id, info.right_clip_status),
    )


def label_out(label: Label) -> schemas.LabelOut:
    return schemas.LabelOut(
        id=label.id,
        experiment_id=label.experiment_id,
        pair_id=label.pair_id,
        rater_id=label.rater_id,
        choice=label.choice,
        response_time_ms=label.response_time_ms,
        idempotency_key=label.idempotency_key,
        created_at=crud.as_utc(label.created_at),
    )


def experiment_live_out(session: Session, experiment_id: int) -> schemas.ExperimentLive:
    """Everything the experiment page shows (it polls this to stay live)."""
    experiment = crud.get_experiment(session, experiment_id=experiment_id)
    agreement = stats.experiment_agreement(session, experiment_id)
    checkpoint = crud.latest_checkpoint(session, experiment_id=experiment_id)
    fields = {
        name: getattr(experiment, name) for name in schemas.LiveExperiment.model_fields if hasattr(experiment, name)
    }
    return schemas.ExperimentLive.model_validate(
        {
            "experiment": {**fields, "latest_checkpoint_step": checkpoint.step if checkpoint else None},
            "counts": crud.experiment_counts(session, experiment_id=experiment_id),
            "raters": agreement.raters,
            "between_raters": agreement.between_raters,
            "with_teacher": agreement.with_teacher,
            "pairs_multiply_labeled": agreement.pairs_multiply_labeled,
            "series": crud.metric_series(session, experiment_id=experiment_id, keys=PLOTTED_SERIES),
        },
        from_attributes=True,  # the agreement dataclasses, `rate` included
    )

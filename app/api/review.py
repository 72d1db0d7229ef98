"""The admin's review of an experiment: the queue, disagreements, dropping a rater's labels, the current policy's
clip, and the environments a new experiment can use."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from fastapi.responses import FileResponse
from sqlalchemy import select

from app import crud, schemas
from app.api.convert import API_PREFIX, segment_ref
from app.api.responses import API_ERRORS, errors
from app.crud import review
from app.deps import AdminDep, PathId, SessionDep, SettingsDep
from app.env_catalog import ENVS
from app.errors import NotFound
from app.models import Checkpoint

router = APIRouter(tags=["review"], responses=errors(*API_ERRORS))

# Checkpoint meta key under which the worker records the policy clip it rendered (a path in the clip folder).
POLICY_CLIP_KEY = "policy_clip"


@router.get("/envs", response_model=list[schemas.EnvOut])
def list_envs(_admin: AdminDep) -> list[schemas.EnvOut]:
    """Environments the worker can run, with the spaces and defaults a new experiment on each takes (admin)."""
    return [schemas.EnvOut(env_id=env_id, **fields) for env_id, fields in ENVS.items()]


@router.get("/experiments/{experiment_id}/queue", response_model=schemas.QueueOut, responses=errors(404))
def get_queue(experiment_id: PathId, session: SessionDep, settings: SettingsDep, _admin: AdminDep) -> schemas.QueueOut:
    """Pending pairs and every live lease: who holds which pair until when (admin)."""
    view = review.queue_view(session, experiment_id=experiment_id)
    return schemas.QueueOut(
        pairs_pending=view.pairs_pending,
        held_by_humans=view.held_by_humans,
        lease_seconds=settings.lease_seconds,
        leases=[schemas.HeldPairOut.model_validate(lease, from_attributes=True) for lease in view.leases],
    )


@router.delete("/experiments/{experiment_id}/leases/{lease_id}", status_code=204, responses=errors(404))
def release_stuck_lease(experiment_id: PathId, lease_id: PathId, session: SessionDep, _admin: AdminDep) -> None:
    """Free a pair a rater holds (a closed tab, a rater gone for lunch): it waits for the next rater at once."""
    crud.release_lease(session, lease_id=lease_id, experiment_id=experiment_id)


@router.get(
    "/experiments/{experiment_id}/disagreements", response_model=list[schemas.DisagreementOut], responses=errors(404)
)
def list_disagreements(
    experiment_id: PathId,
    session: SessionDep,
    _admin: AdminDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[schemas.DisagreementOut]:
    """Pairs whose raters gave different answers, newest first, with both clips and a perfect teacher's (admin)."""
    return [
        schemas.DisagreementOut(
            pair_id=item.pair_id,
            left=segment_ref(item.left_segment_id, item.left_clip_status),
            right=segment_ref(item.right_segment_id, item.right_clip_status),
            answers=[schemas.AnswerOut.model_validate(answer, from_attributes=True) for answer in item.answers],
            teacher_choice=item.teacher_choice,  # type: ignore[arg-type]
        )
        for item in review.disagreements(session, experiment_id=experiment_id, limit=limit)
    ]


@router.post(
    "/experiments/{experiment_id}/raters/{rater_id}/labels/drop",
    response_model=schemas.DroppedLabels,
    responses=errors(404),
)
def drop_rater_labels(
    experiment_id: PathId, rater_id: PathId, session: SessionDep, _admin: AdminDep
) -> schemas.DroppedLabels:
    """Remove every label of the rater in the experiment; the worker stops training on them at its next fit
    and their pairs wait for labels again. The response holds the removed labels (admin)."""
    records = review.drop_rater_labels(session, experiment_id=experiment_id, rater_id=rater_id)
    return schemas.DroppedLabels(dropped=len(records), labels=records)


def _latest_policy_clip(session: SessionDep, experiment_id: int) -> Checkpoint | None:
    crud.get_experiment(session, experiment_id=experiment_id)
    recent = session.scalars(
        select(Checkpoint).where(Checkpoint.experiment_id == experiment_id).order_by(Checkpoint.id.desc()).limit(50)
    )
    for checkpoint in recent:
        if isinstance(checkpoint.meta, dict) and checkpoint.meta.get(POLICY_CLIP_KEY):
            return checkpoint
    return None


@router.get(
    "/experiments/{experiment_id}/policy",
    response_model=schemas.PolicyClipOut,
    responses={204: {"description": "The worker has not rendered the policy yet; poll again later."}, **errors(404)},
)
def get_policy_clip_info(
    experiment_id: PathId, session: SessionDep, _admin: AdminDep
) -> schemas.PolicyClipOut | Response:
    """The step and label count of the latest clip of the current policy, and its URL (admin)."""
    checkpoint = _latest_policy_clip(session, experiment_id)
    if checkpoint is None:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    return schemas.PolicyClipOut(
        step=checkpoint.step,
        labels_used=checkpoint.labels_used,
        clip_url=f"{API_PREFIX}/experiments/{experiment_id}/policy/clip?step={checkpoint.step}",
    )


@router.get("/experiments/{experiment_id}/policy/clip", response_class=FileResponse, responses=errors(404))
def get_policy_clip(
    experiment_id: PathId, session: SessionDep, settings: SettingsDep, _admin: AdminDep
) -> FileResponse:
    """The latest MP4 of the deterministic policy, rendered by the worker after a checkpoint (admin)."""
    checkpoint = _latest_policy_clip(session, experiment_id)
    if checkpoint is None:
        raise NotFound("policy_clip", "the worker has not rendered the policy yet")
    path = settings.clip_dir / Path(str(checkpoint.meta[POLICY_CLIP_KEY]))
    if not path.resolve().is_relative_to(settings.clip_dir.resolve()) or not path.is_file():
        raise NotFound("policy_clip", "file missing from the clip folder")
    return FileResponse(path, media_type="video/mp4", headers={"Cache-Control": "private, max-age=60"})

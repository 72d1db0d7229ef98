"""Segments: queue one or many (arrays checked against the experiment's spaces), read, and their clips."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from sqlalchemy.orm import Session

from app import crud, schemas
from app.api.convert import segment_out, segment_view
from app.api.responses import API_ERRORS, errors
from app.deps import (
    AdminDep,
    PathId,
    Principal,
    PrincipalDep,
    SessionDep,
    SettingsDep,
    check_experiment_access,
)
from app.errors import Invalid
from app.settings import Settings

router = APIRouter(tags=["segments"], responses=errors(*API_ERRORS))


@router.post(
    "/experiments/{experiment_id}/segments",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.SegmentsCreated,
    responses=errors(404),
)
def queue_segments(
    experiment_id: PathId, body: schemas.SegmentsCreate, session: SessionDep, _admin: AdminDep
) -> schemas.SegmentsCreated:
    """Queue one or many segments; those with a `render` spec get a clip rendered by the worker (admin)."""
    segment_ids, job_ids = crud.add_segments(session, experiment_id=experiment_id, segments=body.segments)
    return schemas.SegmentsCreated(segment_ids=segment_ids, render_job_ids=job_ids)


@router.get("/segments/{segment_id}", response_model=schemas.SegmentOut | schemas.SegmentView, responses=errors(404))
def get_segment(
    segment_id: PathId,
    session: SessionDep,
    principal: PrincipalDep,
    include_arrays: Annotated[bool, Query(description="Also return obs, actions, rewards, ended (admin).")] = False,
) -> schemas.SegmentOut | schemas.SegmentView:
    """Read a segment: its clip; for the admin also its source, true return and, on request, its arrays."""
    segment = crud.get_segment(session, segment_id=segment_id)
    check_experiment_access(session, principal, segment.experiment_id)
    if not principal.is_admin:
        return segment_view(segment)  # raters never see what the synthetic teacher answers from
    return segment_out(segment, include_arrays=include_arrays)


@router.put(
    "/segments/{segment_id}/frames",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=schemas.JobOut,
    responses=errors(404),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/x-npy": {"schema": {"type": "string", "format": "binary"}}},
            "description": "A .npy file holding a (T, H, W, 3) uint8 array of RGB frames.",
        }
    },
)
async def upload_frames(
    segment_id: PathId,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    _admin: AdminDep,
    fps: Annotated[int, Query(ge=1, le=120)] = 30,
) -> schemas.JobOut:
    """Send the segment's frames (.npy, uint8 (T, H, W, 3)); the worker encodes them into its clip (admin)."""
    body = await request.body()
    try:
        frames = np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise Invalid("frames", "body must be a .npy array") from error
    job = await run_in_threadpool(
        crud.queue_uploaded_frames,
        session,
        segment_id=segment_id,
        frames=frames,
        fps=fps,
        upload_dir=settings.upload_dir,
    )
    return schemas.JobOut.model_validate(job, from_attributes=True)


def _clip_file(
    session: Session, settings: Settings, principal: Principal, segment_id: int, poster: bool
) -> Path:
    segment = crud.get_segment(session, segment_id=segment_id)
    check_experiment_access(session, principal, segment.experiment_id)
    if segment.clip is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"clip: not ready (status {segment.clip_status})")
    relative = segment.clip.poster_path if poster else segment.clip.video_path
    path = settings.clip_dir / relative
    if not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, "clip: file missing from the clip folder")
    return path


@router.get(
    "/segments/{segment_id}/clip",
    response_class=FileResponse,
    responses={
        200: {"content": {"video/mp4": {}}},
        206: {"description": "The byte range asked for (Range header).", "content": {"video/mp4": {}}},
        **errors(404),
    },
)
def get_clip(
    segment_id: PathId, session: SessionDep, settings: SettingsDep, principal: PrincipalDep
) -> FileResponse:
    """The segment's MP4/H.264 clip (moov atom first); honours Range requests with 206 for seeking."""
    path = _clip_file(session, settings, principal, segment_id, poster=False)
    # Content-addressed file: it never changes, so browsers may keep it.
    return FileResponse(
        path, media_type="video/mp4", headers={"Cache-Control": "private, max-age=31536000, immutable"}
    )


@router.get("/segments/{segment_id}/poster", response_class=FileResponse, responses=errors(404))
def get_poster(
    segment_id: PathId, session: SessionDep, settings: SettingsDep, principal: PrincipalDep
) -> FileResponse:
    """The clip's poster image (its first frame)."""
    path = _clip_file(session, settings, principal, segment_id, poster=True)
    return FileResponse(path, headers={"Cache-Control": "private, max-age=31536000, immutable"})

"""Raters: invite links (a rater token shown once, stored hashed) and who is invited where."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from app import crud, schemas
from app.api.responses import API_ERRORS, errors
from app.deps import AdminDep, PathId, SessionDep, SettingsDep, check_experiment_access
from app.models import Rater

router = APIRouter(tags=["raters"], responses=errors(*API_ERRORS))


def _rater_out(session: SessionDep, rater: Rater) -> schemas.RaterOut:
    return schemas.RaterOut(
        id=rater.id,
        name=rater.name,
        kind=rater.kind,
        active=rater.active,
        experiment_ids=crud.rater_experiment_ids(session, rater_id=rater.id),
        created_at=crud.as_utc(rater.created_at),
    )


@router.post("/invites", status_code=status.HTTP_201_CREATED, response_model=schemas.InviteOut, responses=errors(404))
def create_invite(
    body: schemas.InviteCreate, session: SessionDep, settings: SettingsDep, _admin: AdminDep
) -> schemas.InviteOut:
    """Create a rater invited to the given experiments; returns its token and invite link once (admin)."""
    rater, token = crud.create_rater(session, name=body.name, experiment_ids=body.experiment_ids, kind=body.kind)
    return schemas.InviteOut(
        rater_id=rater.id,
        name=rater.name,
        kind=rater.kind,
        token=token,
        invite_url=f"{settings.public_url.rstrip('/')}/invite/{token}",
        experiment_ids=list(dict.fromkeys(body.experiment_ids)),
    )


@router.get("/raters", response_model=list[schemas.RaterOut])
def list_raters(session: SessionDep, _admin: AdminDep) -> list[schemas.RaterOut]:
    """All raters and the experiments each may label (admin)."""
    return [_rater_out(session, rater) for rater in crud.list_raters(session)]


@router.get("/experiments/{experiment_id}/raters", response_model=list[schemas.RaterOut], responses=errors(404))
def list_experiment_raters(
    experiment_id: PathId, session: SessionDep, admin: AdminDep
) -> list[schemas.RaterOut]:
    """Raters invited to one experiment (admin)."""
    check_experiment_access(session, admin, experiment_id)
    return [_rater_out(session, rater) for rater in crud.list_raters(session, experiment_id=experiment_id)]


@router.put(
    "/experiments/{experiment_id}/raters/{rater_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404, 409)
)
def invite_rater(experiment_id: PathId, rater_id: PathId, session: SessionDep, _admin: AdminDep) -> None:
    """Invite an existing rater to one more experiment (admin)."""
    crud.invite_rater(session, rater_id=rater_id, experiment_id=experiment_id)


@router.post("/raters/{rater_id}/revoke", response_model=schemas.RaterOut, responses=errors(404))
def revoke_rater(rater_id: PathId, request: Request, session: SessionDep, _admin: AdminDep) -> schemas.RaterOut:
    """Revoke a rater's token and invite link (admin): their labels stay, the pairs they hold return to the
    queue at once. Other web processes may still accept the token for a few seconds (their auth cache), but
    it leases and labels nothing more."""
    rater = crud.revoke_rater(session, rater_id=rater_id)
    request.app.state.auth_cache.forget(rater.token_hash)
    return _rater_out(session, rater)

"""Pairs: queue them; lease the next pair to a rater, release a lease; count what waits for a rater."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Form, Query, Response, status

from app import crud, schemas, stats
from app.api.convert import lease_out, pair_out
from app.api.responses import API_ERRORS, errors
from app.deps import (
    AdminDep,
    BeaconRaterDep,
    PathId,
    PrincipalDep,
    RaterCallDep,
    RaterDep,
    SessionDep,
    check_experiment_access,
)
from app.errors import Invalid, NotFound
from app.hot_route import hot_post

router = APIRouter(tags=["pairs"], responses=errors(*API_ERRORS))


@router.post(
    "/experiments/{experiment_id}/pairs",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.PairsCreated,
    responses=errors(404),
)
def queue_pairs(
    experiment_id: PathId, body: schemas.PairsCreate, session: SessionDep, _admin: AdminDep
) -> schemas.PairsCreated:
    """Queue pairs of this experiment's segments for labeling (admin)."""
    return schemas.PairsCreated(pair_ids=crud.add_pairs(session, experiment_id=experiment_id, pairs=body.pairs))


@router.get("/pairs/{pair_id}", response_model=schemas.PairOut, responses=errors(404))
def get_pair(pair_id: PathId, session: SessionDep, principal: PrincipalDep) -> schemas.PairOut:
    """Read a pair: its segments, status and label count."""
    pair = crud.get_pair(session, pair_id=pair_id)
    check_experiment_access(session, principal, pair.experiment_id)
    return pair_out(pair)


# The raters' hot paths (lease, label, undo, the page's polling reads, health) are `async def` and call the data
# layer through the database runner: a hop to FastAPI's thread pool cost more than the work itself (with ~40
# threads convoying on the GIL, server CPU per request doubled), while calling PostgreSQL inline stalled every
# other request for each round trip. The runner calls SQLite inline and PostgreSQL on a small pool of its own.
@hot_post(
    router,
    "/experiments/{experiment_id}/leases",
    response_model=schemas.LeaseOut,
    responses={204: {"description": "No pair is waiting for this rater; poll again later."}, **errors(404)},
)
async def lease_pair(
    experiment_id: PathId,
    rater: RaterCallDep,
    exclude: Annotated[
        list[schemas.Id] | None,
        Query(max_length=100, description="Pair ids the caller shows already: held ones are not returned again."),
    ] = None,
) -> schemas.LeaseOut | Response:
    """The calling rater's next pair: one they hold already (oldest first, lease unchanged), else a new lease
    while they hold fewer than the cap (RLHF_MAX_LEASES_PER_RATER); 204 when none is waiting."""
    await rater.require_access(experiment_id)
    info = await rater.database.transact(
        crud.lease_in,
        experiment_id=experiment_id,
        rater_id=rater.rater_id,
        lease_seconds=rater.settings.lease_seconds,
        max_held=rater.settings.max_leases_per_rater,
        exclude_pair_ids=set(exclude or ()),
    )
    if info is None:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    return lease_out(info)


@router.get(
    "/experiments/{experiment_id}/pairs/waiting", response_model=schemas.PairsWaiting, responses=errors(404)
)
def count_pairs_waiting(experiment_id: PathId, session: SessionDep, rater: RaterDep) -> schemas.PairsWaiting:
    """How many pending pairs the calling rater has not labeled yet (those the rater holds included)."""
    check_experiment_access(session, rater, experiment_id)
    assert rater.rater_id is not None
    return schemas.PairsWaiting(pairs_waiting=stats.pairs_waiting(session, experiment_id, rater.rater_id))


@router.delete("/leases/{lease_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404))
def release_lease(lease_id: PathId, session: SessionDep, rater: RaterDep) -> None:
    """Give a leased pair back to the pool before its lease expires."""
    assert rater.rater_id is not None
    crud.release_lease(session, lease_id=lease_id, rater_id=rater.rater_id)


@router.post("/leases/{lease_id}/release", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404))
def release_lease_by_beacon(
    lease_id: PathId,
    session: SessionDep,
    rater: BeaconRaterDep,
    expires_at: Annotated[
        datetime | None,
        Form(description="The lease's expiry as the page was given it: only that term is released, not one a "
             "reloaded page was handed since."),
    ] = None,
) -> None:
    """As DELETE /leases/{lease_id}, for a page leaving (`navigator.sendBeacon` on pagehide), which can send
    no headers: with the session cookie the CSRF token comes as the form field `csrf_token`."""
    assert rater.rater_id is not None
    if expires_at is None:
        crud.release_lease(session, lease_id=lease_id, rater_id=rater.rater_id)
    elif not crud.release_lease_terms(session, rater_id=rater.rater_id, terms={lease_id: expires_at.astimezone(UTC)}):
        raise NotFound("lease_id", f"no lease {lease_id} held by this rater for that term")


@router.post("/leases/release", status_code=status.HTTP_204_NO_CONTENT, responses=errors(422))
def release_leases_by_beacon(
    session: SessionDep,
    rater: BeaconRaterDep,
    lease_id: Annotated[list[int], Form(description="The leases to hand back, one field per lease.")],
    expires_at: Annotated[
        list[datetime], Form(description="Each lease's expiry as the page was given it, in `lease_id`'s order.")
    ],
) -> None:
    """What a leaving page sends once for every pair it holds (`navigator.sendBeacon` on pagehide): the terms
    it was given are released in one transaction, so a reload that asks meanwhile finds all or none of them.
    A lease gone already, or renewed since, is left as it is (the reloaded page holds it now)."""
    assert rater.rater_id is not None
    if len(lease_id) != len(expires_at):
        raise Invalid("expires_at", f"{len(expires_at)} expiries for {len(lease_id)} leases: give one per lease_id")
    terms = {lease: expiry.astimezone(UTC) for lease, expiry in zip(lease_id, expires_at, strict=True)}
    crud.release_lease_terms(session, rater_id=rater.rater_id, terms=terms)

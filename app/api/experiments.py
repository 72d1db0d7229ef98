"""Experiments: create, list, read with counts and latest metrics, change mode and instructions; metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from app import crud, schemas
from app.api.convert import experiment_live_out, experiment_out
from app.api.responses import API_ERRORS, errors
from app.deps import AdminDep, PathId, PrincipalDep, SessionDep, check_experiment_access

router = APIRouter(prefix="/experiments", tags=["experiments"], responses=errors(*API_ERRORS))


@router.post("", status_code=status.HTTP_201_CREATED, response_model=schemas.ExperimentOut, responses=errors(409))
def create_experiment(
    body: schemas.ExperimentCreate, session: SessionDep, _admin: AdminDep
) -> schemas.ExperimentOut:
    """Create an experiment with its environment, spaces, teacher mode and instructions (admin)."""
    experiment = crud.create_experiment(session, data=body)
    return experiment_out(session, experiment, detailed=True)


@router.get("", response_model=list[schemas.ExperimentOut])
def list_experiments(session: SessionDep, principal: PrincipalDep) -> list[schemas.ExperimentOut]:
    """List experiments: all for the admin, the invited ones for a rater."""
    experiments = crud.list_experiments(session, rater_id=None if principal.is_admin else principal.rater_id)
    return [experiment_out(session, experiment, detailed=False) for experiment in experiments]


@router.get("/{experiment_id}", response_model=schemas.ExperimentOut, responses=errors(404))
def get_experiment(experiment_id: PathId, session: SessionDep, principal: PrincipalDep) -> schemas.ExperimentOut:
    """Read an experiment with its counts (segments, pairs, labels, raters) and latest metrics."""
    check_experiment_access(session, principal, experiment_id)
    return experiment_out(session, crud.get_experiment(session, experiment_id=experiment_id), detailed=True)


@router.patch("/{experiment_id}", response_model=schemas.ExperimentOut, responses=errors(404))
def update_experiment(
    experiment_id: PathId, body: schemas.ExperimentUpdate, session: SessionDep, _admin: AdminDep
) -> schemas.ExperimentOut:
    """Change teacher mode, instructions, status or budgets (admin); a mode switch acts from the next pair."""
    experiment = crud.update_experiment(
        session, experiment_id=experiment_id, changes=body.model_dump(exclude_unset=True)
    )
    return experiment_out(session, experiment, detailed=True)


@router.get("/{experiment_id}/live", response_model=schemas.ExperimentLive, responses=errors(404))
def get_experiment_live(experiment_id: PathId, session: SessionDep, _admin: AdminDep) -> schemas.ExperimentLive:
    """Counts, per-rater agreement and the plotted metric series: what the experiment page shows (admin)."""
    return experiment_live_out(session, experiment_id)


@router.post("/{experiment_id}/metrics", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404))
def record_metrics(
    experiment_id: PathId, body: schemas.MetricsRecord, session: SessionDep, _admin: AdminDep
) -> None:
    """Append metric points (e.g. `env/true_return`) at a training step (admin or worker)."""
    crud.record_metrics(session, experiment_id=experiment_id, step=body.step, values=body.values)


@router.get(
    "/{experiment_id}/metrics", response_model=dict[str, list[schemas.MetricValue]], responses=errors(404)
)
def get_metrics(
    experiment_id: PathId,
    session: SessionDep,
    principal: PrincipalDep,
    key: Annotated[list[schemas.Key] | None, Query(description="Series to return; all when omitted.")] = None,
    after_step: Annotated[schemas.Step | None, Query(description="Only points after this step.")] = None,
) -> dict[str, list[schemas.MetricValue]]:
    """Metric series of an experiment, by key, in step order."""
    check_experiment_access(session, principal, experiment_id)
    series = crud.metric_series(session, experiment_id=experiment_id, keys=key, after_step=after_step)
    return {
        name: [schemas.MetricValue(step=s, value=v) for s, v in points] for name, points in series.items()
    }

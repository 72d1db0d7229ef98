"""A rater's own progress and answers: counts kept on the server, the latest answers, and changing one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from app import crud, schemas
from app.api.convert import label_out, segment_ref
from app.api.responses import API_ERRORS, errors
from app.crud import history
from app.deps import PathId, RaterCallDep, RaterDep, SessionDep
from app.models import Experiment

router = APIRouter(tags=["labels"], responses=errors(*API_ERRORS))


@router.get("/experiments/{experiment_id}/progress", response_model=schemas.RaterProgressOut, responses=errors(404))
async def get_rater_progress(experiment_id: PathId, rater: RaterCallDep) -> schemas.RaterProgressOut:
    """The calling rater's label count and what waits: the labeling page's counters (they survive a reload)."""
    # The page polls this and the next route: `async def` through the database runner, like lease_pair.
    await rater.require_access(experiment_id)
    progress = await rater.database.run(history.rater_progress, experiment_id=experiment_id, rater_id=rater.rater_id)
    return schemas.RaterProgressOut(
        labels=progress.labels,
        pairs_waiting=progress.pairs_waiting,
        held_by_others=progress.held_by_others,
        holding=progress.holding,
    )


@router.get(
    "/experiments/{experiment_id}/labels/mine", response_model=list[schemas.HistoryEntryOut], responses=errors(404)
)
async def list_my_labels(
    experiment_id: PathId,
    rater: RaterCallDep,
    limit: Annotated[int, Query(ge=1, le=200, description="How many of the latest answers.")] = 20,
) -> list[schemas.HistoryEntryOut]:
    """The calling rater's latest answers in the experiment, newest first, with both clips of each pair."""
    await rater.require_access(experiment_id)
    experiment, entries = await rater.database.run(_experiment_and_history, experiment_id, rater.rater_id, limit)
    return [
        schemas.HistoryEntryOut(
            label_id=entry.label_id,
            pair_id=entry.pair_id,
            choice=entry.choice,  # type: ignore[arg-type]
            created_at=entry.created_at,
            left=segment_ref(entry.left_segment_id, entry.left_clip_status),
            right=segment_ref(entry.right_segment_id, entry.right_clip_status),
            changeable=experiment.status != "done",
        )
        for entry in entries
    ]


def _experiment_and_history(
    session: Session, experiment_id: int, rater_id: int, limit: int
) -> tuple[Experiment, list[history.HistoryEntry]]:
    experiment = crud.get_experiment(session, experiment_id=experiment_id)
    return experiment, history.rater_history(session, experiment_id=experiment_id, rater_id=rater_id, limit=limit)


@router.put("/labels/{label_id}", response_model=schemas.LabelOut, responses=errors(404))
def change_label(label_id: PathId, body: schemas.LabelChange, session: SessionDep, rater: RaterDep) -> schemas.LabelOut:
    """Change one of the calling rater's answers (a new label id replaces it); 409 once the experiment is done."""
    assert rater.rater_id is not None
    label = history.change_label(session, rater_id=rater.rater_id, label_id=label_id, choice=body.choice)
    return label_out(label)

"""Labels: submit (idempotent), undo the last one, export as JSONL or CSV (streamed), import JSONL."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import ConfigDict, ValidationError, model_validator
from sqlalchemy.orm import Session, sessionmaker

from app import crud, schemas
from app.api.convert import label_out, lease_out
from app.api.responses import API_ERRORS, errors
from app.deps import AdminDep, PathId, RaterCallDep, SessionDep
from app.errors import Invalid
from app.hot_route import hot_post
from app.vocabulary import Choice

router = APIRouter(tags=["labels"], responses=errors(*API_ERRORS))


# `async def` through the database runner: see lease_pair in app/api/pairs.py.
@hot_post(
    router,
    "/labels",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.LabelOut,
    responses=errors(404, 409),
)
async def submit_label(body: schemas.LabelCreate, rater: RaterCallDep) -> schemas.LabelOut:
    """Store the calling rater's choice for a leased pair; the same idempotency key answers the same label."""
    label, _created = await rater.database.write(
        crud.label_in,
        rater_id=rater.rater_id,
        pair_id=body.pair_id,
        choice=body.choice,
        response_time_ms=body.response_time_ms,
        idempotency_key=body.idempotency_key,
    )
    return label_out(label)


@router.post("/experiments/{experiment_id}/labels/undo", response_model=schemas.UndoOut, responses=errors(404))
async def undo_label(experiment_id: PathId, rater: RaterCallDep) -> schemas.UndoOut:
    """Remove the calling rater's last label in the experiment and lease its pair back to them."""
    await rater.require_access(experiment_id)
    label, info = await rater.database.run(
        crud.undo_last_label,
        experiment_id=experiment_id,
        rater_id=rater.rater_id,
        lease_seconds=rater.settings.lease_seconds,
    )
    return schemas.UndoOut(label=label_out(label), lease=lease_out(info))


def _stream_records(factory: sessionmaker[Session], experiment_id: int, export_format: str) -> Iterator[str]:
    # Its own session: the request's session closes before a streamed body is sent.
    with factory() as session:
        if export_format == "csv":
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=crud.EXPORT_FIELDS, lineterminator="\n")
            writer.writeheader()
            for record in crud.iter_label_records(session, experiment_id=experiment_id):
                writer.writerow(record)
                if buffer.tell() > 64 * 1024:
                    yield buffer.getvalue()
                    buffer.seek(0)
                    buffer.truncate()
            yield buffer.getvalue()
        else:
            for record in crud.iter_label_records(session, experiment_id=experiment_id):
                yield json.dumps(record) + "\n"


@router.get(
    "/experiments/{experiment_id}/labels/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}, "text/csv": {}}}, **errors(404)},
)
def export_labels(
    experiment_id: PathId,
    request: Request,
    session: SessionDep,
    _admin: AdminDep,
    format: Annotated[
        Literal["jsonl", "csv"], Query(description="jsonl (one JSON object a line) or csv.")
    ] = "jsonl",
) -> StreamingResponse:
    """Stream every label with its segment ids, rater, time and response time, as JSONL or CSV (admin)."""
    crud.get_experiment(session, experiment_id=experiment_id)
    media_type = "text/csv" if format == "csv" else "application/x-ndjson"
    filename = f"experiment-{experiment_id}-labels.{format}"
    return StreamingResponse(
        _stream_records(request.app.state.session_factory, experiment_id, format),
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


class LabelImport(schemas.StrictModel):
    """One JSONL line of an import: an export record (extra export fields are ignored)."""

    model_config = ConfigDict(extra="ignore")

    pair_id: schemas.Id
    choice: Choice
    rater_id: schemas.Id | None = None
    rater_name: schemas.Name | None = None
    response_time_ms: schemas.ResponseTimeMs | None = None
    created_at: datetime | None = None
    idempotency_key: schemas.Key | None = None

    @model_validator(mode="after")
    def _needs_a_rater(self) -> LabelImport:
        if self.rater_id is None and self.rater_name is None:
            raise ValueError("rater_id or rater_name is required")
        return self


def parse_jsonl(text: str) -> list[crud.ImportedLabel]:
    """Validate every line; the first bad one raises Invalid naming the line and field."""
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = LabelImport.model_validate_json(line)
        except ValidationError as error:
            first = error.errors()[0]
            location = ".".join(str(part) for part in first["loc"])
            raise Invalid(
                f"line {number}.{location}" if location else f"line {number}", first["msg"]
            ) from error
        records.append(crud.ImportedLabel(line=number, **item.model_dump()))
    if not records:
        raise Invalid("body", "no labels: send one JSON object a line")
    return records


@router.post(
    "/experiments/{experiment_id}/labels/import",
    response_model=schemas.ImportResult,
    responses=errors(404, 409),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-ndjson": {
                    "schema": {"type": "string"},
                    "example": '{"pair_id": 12, "rater_name": "alice", "choice": "left"}\n',
                }
            },
        }
    },
)
async def import_labels(
    experiment_id: PathId, request: Request, session: SessionDep, _admin: AdminDep
) -> schemas.ImportResult:
    """Import labels from JSONL (e.g. an export); all lines are stored or none (admin)."""
    body = await request.body()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise Invalid("body", "must be UTF-8 JSONL") from error
    records = parse_jsonl(text)
    imported = await run_in_threadpool(crud.import_labels, session, experiment_id=experiment_id, records=records)
    return schemas.ImportResult(imported=imported)

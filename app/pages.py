"""HTML pages: invite-link sign-in, the rater's labeling page, the admin experiment page, and the small
cookie-authenticated JSON endpoints their scripts call.

The session token (rater invite token or admin token) lives in an HttpOnly cookie, so page scripts cannot
read it and send no Authorization header; every POST here instead carries a CSRF token (form field or
`X-CSRF-Token` header) that must equal the `rlhf_csrf` cookie (double submit: a cross-site page can neither
read that cookie nor the page that embeds it). Labels go through `crud.submit_label`, the write path the
API and the synthetic teacher use; the admin's teacher-mode switch goes through `crud.update_experiment`, as
`PATCH /api/v1/experiments/{id}` does.
"""

from __future__ import annotations

import hmac
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Form, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlalchemy.orm import Session

from app import crud, schemas, stats
from app.api.convert import label_out, lease_out
from app.deps import TOKEN_COOKIE, Principal, SessionDep, TtlCache, known_principal, remember_rater
from app.errors import NotFound
from app.models import Rater

CSRF_COOKIE = "rlhf_csrf"
CSRF_HEADER = "X-CSRF-Token"
SESSION_MAX_AGE = 30 * 24 * 3600
ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_DIR = ROOT / "templates"
STATIC_DIR = ROOT / "static"
# Series the experiment page plots (names as the worker records them).
PLOTTED_SERIES = ("env/true_return", "reward/accuracy", "labels/count")
WAITING_POLL_MS = 2000
UNKNOWN_INVITE = "This invite link is unknown or was revoked. Ask for a new one."
LIVE_POLL_MS = 3000
# The experiment page's teacher-mode buttons: (mode as stored, button text, what it means).
TEACHER_MODE_CHOICES = (
    ("human", "Human", "only invited raters label pairs"),
    ("oracle", "Oracle", "the synthetic teacher labels every pair from the true reward"),
    ("mixed", "Mixed", "raters first; the synthetic teacher answers pairs still waiting after the timeout"),
)

router = APIRouter(include_in_schema=False)


def install(app: FastAPI) -> None:
    """Add the pages and serve `static/` (called once from `create_app`)."""
    app.state.templates = Jinja2Templates(directory=TEMPLATE_DIR)
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


# ----------------------------------------------------------------------------------------- session helpers


def cookie_principal(request: Request, session: Session) -> Principal | None:
    """The admin or rater whose token is in the session cookie, or None."""
    token = request.cookies.get(TOKEN_COOKIE, "")
    if not token:
        return None
    principal = known_principal(request, token)
    if principal is None:
        rater_id = crud.rater_id_for_token(session, token=token)
        if rater_id is None:
            return None
        principal = remember_rater(request, token, rater_id)
    return principal


def page_csrf_token(request: Request) -> str:
    """The browser's CSRF token: the one in its cookie, or a new one that `render` sets as the cookie."""
    token = request.cookies.get(CSRF_COOKIE)
    if token:
        return token
    if not hasattr(request.state, "new_csrf"):
        request.state.new_csrf = crud.new_token()
    return request.state.new_csrf


def check_csrf(request: Request, submitted: str | None) -> None:
    """403 unless the submitted token equals the CSRF cookie."""
    expected = request.cookies.get(CSRF_COOKIE, "")
    if not expected or not submitted or not hmac.compare_digest(expected, submitted):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "csrf: missing or wrong CSRF token")


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> Response:
    """Render a template with the CSRF token in its context, setting the CSRF cookie when it is new."""
    token = page_csrf_token(request)
    response = request.app.state.templates.TemplateResponse(
        request, name, {"csrf_token": token, **context}, status_code=status_code
    )
    if request.cookies.get(CSRF_COOKIE) != token:
        response.set_cookie(
            CSRF_COOKIE, token, max_age=SESSION_MAX_AGE, httponly=True, samesite="strict", secure=_secure(request)
        )
    return response


def _sign_in(response: Response, request: Request, token: str) -> Response:
    response.set_cookie(
        TOKEN_COOKIE, token, max_age=SESSION_MAX_AGE, httponly=True, samesite="lax", secure=_secure(request)
    )
    return response


def _signin_error(request: Request, error: str | None, status_code: int) -> Response:
    return render(request, "signin.html", {"rater": None, "experiments": [], "error": error}, status_code)


def _rater_or_401(request: Request, session: Session) -> Principal:
    principal = cookie_principal(request, session)
    if principal is None or principal.rater_id is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "session: sign in with your invite link")
    return principal


def _check_invited(session: Session, principal: Principal, experiment_id: int) -> None:
    assert principal.rater_id is not None
    if not crud.is_invited(session, rater_id=principal.rater_id, experiment_id=experiment_id):
        crud.get_experiment(session, experiment_id=experiment_id)  # unknown: 404
        raise HTTPException(status.HTTP_403_FORBIDDEN, "experiment_id: the rater is not invited to this experiment")


# ------------------------------------------------------------------------------------------ rater sign-in


@router.get("/")
def get_home(request: Request, session: SessionDep) -> Response:
    """Send raters to their experiments and the admin to the experiment list."""
    principal = cookie_principal(request, session)
    if principal is not None and principal.is_admin:
        return RedirectResponse("/admin/experiments", status.HTTP_303_SEE_OTHER)
    if principal is not None:
        return RedirectResponse("/label", status.HTTP_303_SEE_OTHER)
    return _signin_error(request, None, 401)


@router.get("/invite/{token}")
def get_invite(token: str, request: Request, session: SessionDep) -> Response:
    """Show who the invite link signs in and a button that signs in (a POST, so it is CSRF-checked)."""
    rater = crud.rater_for_token(session, token=token)
    if rater is None:
        return _signin_error(request, UNKNOWN_INVITE, 404)
    experiments = crud.list_experiments(session, rater_id=rater.id)
    return render(request, "signin.html", {"rater": rater, "experiments": experiments, "token": token, "error": None})


@router.post("/invite/{token}")
def sign_in_rater(
    token: str, request: Request, session: SessionDep, csrf_token: Annotated[str, Form()] = ""
) -> Response:
    """Keep the invite token in an HttpOnly cookie and go to the labeling page."""
    check_csrf(request, csrf_token)
    rater = crud.rater_for_token(session, token=token)
    if rater is None:
        return _signin_error(request, UNKNOWN_INVITE, 404)
    return _sign_in(RedirectResponse("/label", status.HTTP_303_SEE_OTHER), request, token)


@router.post("/signout")
def sign_out(request: Request, csrf_token: Annotated[str, Form()] = "") -> Response:
    """Forget the session cookie."""
    check_csrf(request, csrf_token)
    response = RedirectResponse("/", status.HTTP_303_SEE_OTHER)
    response.delete_cookie(TOKEN_COOKIE)
    return response


# ------------------------------------------------------------------------------------------ labeling pages


@router.get("/label")
def list_rater_experiments(request: Request, session: SessionDep) -> Response:
    """The experiments this rater was invited to; straight to the labeling page when there is one."""
    principal = cookie_principal(request, session)
    if principal is None or principal.rater_id is None:
        error = "Open your invite link to sign in." if principal is None else "The admin has no pairs to label."
        return _signin_error(request, error, 401)
    experiments = crud.list_experiments(session, rater_id=principal.rater_id)
    if len(experiments) == 1:
        return RedirectResponse(f"/label/{experiments[0].id}", status.HTTP_303_SEE_OTHER)
    return render(request, "experiments.html", {"experiments": experiments, "admin": False})


@router.get("/label/{experiment_id}")
def get_label_page(experiment_id: int, request: Request, session: SessionDep) -> Response:
    """The labeling page: instructions, two synced clips, choice buttons and keyboard shortcuts."""
    principal = cookie_principal(request, session)
    if principal is None or principal.rater_id is None:
        return _signin_error(request, "Open your invite link to sign in.", 401)
    try:
        _check_invited(session, principal, experiment_id)
    except (HTTPException, NotFound):
        return _signin_error(request, "You were not invited to this experiment.", 403)
    experiment = crud.get_experiment(session, experiment_id=experiment_id)
    rater = session.get(Rater, principal.rater_id)
    return render(
        request,
        "label.html",
        {
            "experiment": experiment,
            "rater_name": rater.name if rater else "",
            "waiting": stats.pairs_waiting(session, experiment_id, principal.rater_id),
            "poll_ms": WAITING_POLL_MS,
        },
    )


def _lease_json(info: crud.LeaseInfo | None) -> dict[str, Any] | None:
    return None if info is None else lease_out(info).model_dump(mode="json")


@router.post("/label/{experiment_id}/lease")
def lease_for_page(experiment_id: int, request: Request, session: SessionDep) -> JSONResponse:
    """Lease the next pair to the signed-in rater (`lease` null when none waits), with the waiting count."""
    check_csrf(request, request.headers.get(CSRF_HEADER))
    principal = _rater_or_401(request, session)
    assert principal.rater_id is not None
    cache: TtlCache = request.app.state.auth_cache
    key = ("invited", principal.rater_id, experiment_id)
    if not cache.get(key):
        _check_invited(session, principal, experiment_id)
        cache.put(key, True)
    info = crud.lease_pair(
        session,
        experiment_id=experiment_id,
        rater_id=principal.rater_id,
        lease_seconds=request.app.state.settings.lease_seconds,
    )
    waiting = stats.pairs_waiting(session, experiment_id, principal.rater_id)
    return JSONResponse({"lease": _lease_json(info), "waiting": waiting})


@router.post("/label/{experiment_id}/labels")
def label_from_page(
    experiment_id: int, body: schemas.LabelCreate, request: Request, session: SessionDep
) -> JSONResponse:
    """Store the signed-in rater's choice through the shared write path (`crud.submit_label`)."""
    check_csrf(request, request.headers.get(CSRF_HEADER))
    principal = _rater_or_401(request, session)
    assert principal.rater_id is not None
    if crud.get_pair(session, pair_id=body.pair_id).experiment_id != experiment_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"pair_id: no pair {body.pair_id} in this experiment")
    label, _created = crud.submit_label(
        session,
        rater_id=principal.rater_id,
        pair_id=body.pair_id,
        choice=body.choice,
        response_time_ms=body.response_time_ms,
        idempotency_key=body.idempotency_key,
    )
    waiting = stats.pairs_waiting(session, experiment_id, principal.rater_id)
    return JSONResponse(
        {"label": label_out(label).model_dump(mode="json"), "waiting": waiting}, status_code=status.HTTP_201_CREATED
    )


@router.post("/label/{experiment_id}/undo")
def undo_from_page(experiment_id: int, request: Request, session: SessionDep) -> JSONResponse:
    """Remove the rater's last label here and lease its pair back, so the page can show it again."""
    check_csrf(request, request.headers.get(CSRF_HEADER))
    principal = _rater_or_401(request, session)
    assert principal.rater_id is not None
    _check_invited(session, principal, experiment_id)
    label, info = crud.undo_last_label(
        session,
        experiment_id=experiment_id,
        rater_id=principal.rater_id,
        lease_seconds=request.app.state.settings.lease_seconds,
    )
    waiting = stats.pairs_waiting(session, experiment_id, principal.rater_id)
    return JSONResponse(
        {"label": label_out(label).model_dump(mode="json"), "lease": _lease_json(info), "waiting": waiting}
    )


# --------------------------------------------------------------------------------------------- admin pages


def _is_admin(request: Request, session: Session) -> bool:
    principal = cookie_principal(request, session)
    return principal is not None and principal.is_admin


def _admin_or_401(request: Request, session: Session) -> None:
    if not _is_admin(request, session):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "session: admin sign-in required")


@router.get("/admin")
def get_admin_sign_in(request: Request, session: SessionDep) -> Response:
    """The admin sign-in form (the admin token, kept in an HttpOnly cookie)."""
    if _is_admin(request, session):
        return RedirectResponse("/admin/experiments", status.HTTP_303_SEE_OTHER)
    return render(request, "admin_signin.html", {"error": None})


@router.post("/admin")
def sign_in_admin(
    request: Request, token: Annotated[str, Form()] = "", csrf_token: Annotated[str, Form()] = ""
) -> Response:
    """Check the admin token and keep it in the session cookie."""
    check_csrf(request, csrf_token)
    if not token or not hmac.compare_digest(crud.hash_token(token), request.app.state.admin_token_hash):
        return render(request, "admin_signin.html", {"error": "That is not the admin token."}, 401)
    return _sign_in(RedirectResponse("/admin/experiments", status.HTTP_303_SEE_OTHER), request, token)


@router.get("/admin/experiments")
def list_admin_experiments(request: Request, session: SessionDep) -> Response:
    """Every experiment, linking to its page."""
    if not _is_admin(request, session):
        return RedirectResponse("/admin", status.HTTP_303_SEE_OTHER)
    return render(request, "experiments.html", {"experiments": crud.list_experiments(session), "admin": True})


def experiment_live_data(session: Session, experiment_id: int) -> dict[str, Any]:
    """Everything the experiment page shows, as JSON-ready data (the page polls it to stay live)."""
    experiment = crud.get_experiment(session, experiment_id=experiment_id)
    agreement = stats.experiment_agreement(session, experiment_id)
    series = crud.metric_series(session, experiment_id=experiment_id, keys=PLOTTED_SERIES)
    checkpoint = crud.latest_checkpoint(session, experiment_id=experiment_id)

    def agreement_json(value: stats.Agreement) -> dict[str, Any]:
        return {"matches": value.matches, "compared": value.compared, "rate": value.rate}

    return {
        "experiment": {
            "id": experiment.id,
            "name": experiment.name,
            "env_id": experiment.env_id,
            "status": experiment.status,
            "teacher_mode": experiment.teacher_mode,
            "labels_per_pair": experiment.labels_per_pair,
            "label_budget": experiment.label_budget,
            "owner_worker": experiment.owner_worker,
            "latest_checkpoint_step": checkpoint.step if checkpoint else None,
        },
        "counts": crud.experiment_counts(session, experiment_id=experiment_id),
        "raters": [
            {
                **{k: v for k, v in asdict(summary).items() if k not in ("with_others", "with_teacher")},
                "with_others": agreement_json(summary.with_others),
                "with_teacher": agreement_json(summary.with_teacher),
            }
            for summary in agreement.raters
        ],
        "between_raters": agreement_json(agreement.between_raters),
        "with_teacher": agreement_json(agreement.with_teacher),
        "pairs_multiply_labeled": agreement.pairs_multiply_labeled,
        "series": {key: [[step, value] for step, value in points] for key, points in series.items()},
    }


@router.get("/admin/experiments/{experiment_id}")
def get_experiment_page(experiment_id: int, request: Request, session: SessionDep) -> Response:
    """Status, labels per rater, agreement, response times and live plots of one experiment."""
    if not _is_admin(request, session):
        return RedirectResponse("/admin", status.HTTP_303_SEE_OTHER)
    try:
        live = experiment_live_data(session, experiment_id)
    except NotFound:
        return render(request, "admin_signin.html", {"error": f"No experiment {experiment_id}."}, 404)
    return render(
        request, "experiment.html", {"live": live, "poll_ms": LIVE_POLL_MS, "teacher_modes": TEACHER_MODE_CHOICES}
    )


@router.get("/admin/experiments/{experiment_id}/live")
def get_experiment_live(experiment_id: int, request: Request, session: SessionDep) -> JSONResponse:
    """The experiment page's figures as JSON, polled by its script."""
    _admin_or_401(request, session)
    return JSONResponse(experiment_live_data(session, experiment_id))


@router.post("/admin/experiments/{experiment_id}/mode")
def set_teacher_mode(
    experiment_id: int,
    request: Request,
    session: SessionDep,
    teacher_mode: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    """Switch who labels (human, oracle or mixed) through the API's write path; the worker reads it per pair.

    The page's script sends `X-CSRF-Token` and `Accept: application/json` and gets `{"teacher_mode": ...}`;
    a plain form post sends the `csrf_token` field and is redirected back to the page.
    """
    check_csrf(request, request.headers.get(CSRF_HEADER) or csrf_token)
    _admin_or_401(request, session)
    try:  # the API's schema, so both paths accept the same values with the same message
        changes = schemas.ExperimentUpdate.model_validate({"teacher_mode": teacher_mode})
    except ValidationError as error:
        raise RequestValidationError(error.errors()) from None
    experiment = crud.update_experiment(
        session, experiment_id=experiment_id, changes=changes.model_dump(exclude_unset=True)
    )
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"teacher_mode": experiment.teacher_mode})
    return RedirectResponse(f"/admin/experiments/{experiment_id}", status.HTTP_303_SEE_OTHER)

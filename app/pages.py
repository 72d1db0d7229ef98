"""HTML pages: invite-link sign-in, the rater's labeling page and the admin's experiment pages.

Pages only render HTML and run the sign-in/sign-out form posts that set the session cookie. Their scripts
(static/label.js, static/experiment.js) call the REST API under /api/v1 with that cookie and the CSRF header
(see `app.deps`), so leasing, labeling, undo and the teacher-mode switch have one implementation.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Form, HTTPException, Request, status
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from app import crud, stats
from app.api.convert import experiment_live_out
from app.crud import history
from app.deps import (
    CSRF_COOKIE,
    TOKEN_COOKIE,
    PathId,
    Principal,
    SessionDep,
    check_csrf,
    check_experiment_access,
    principal_for_token,
    record_failed_auth,
    refuse_if_guessing,
)
from app.env_catalog import ENVS
from app.errors import NotFound
from app.models import Rater
from app.vocabulary import TeacherMode

SESSION_MAX_AGE = 30 * 24 * 3600
ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_DIR = ROOT / "templates"
STATIC_DIR = ROOT / "static"
WAITING_POLL_MS = 2000
UNKNOWN_INVITE = "This invite link is unknown or was revoked. Ask for a new one."
LIVE_POLL_MS = 3000
# The experiment page's teacher-mode buttons: (mode as stored, button text, what it means).
TEACHER_MODE_CHOICES: tuple[tuple[TeacherMode, str, str], ...] = (
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
    return principal_for_token(request, session, token) if token else None


def page_csrf_token(request: Request) -> str:
    """The browser's CSRF token: the one in its cookie, or a new one that `render` sets as the cookie."""
    token = request.cookies.get(CSRF_COOKIE)
    if token:
        return token
    if not hasattr(request.state, "new_csrf"):
        request.state.new_csrf = crud.new_token()
    return request.state.new_csrf


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
    refuse_if_guessing(request)
    rater = crud.rater_for_token(session, token=token)
    if rater is None:
        record_failed_auth(request)
        return _signin_error(request, UNKNOWN_INVITE, 404)
    experiments = crud.list_experiments(session, rater_id=rater.id)
    return render(request, "signin.html", {"rater": rater, "experiments": experiments, "token": token, "error": None})


@router.post("/invite/{token}")
def sign_in_rater(
    token: str, request: Request, session: SessionDep, csrf_token: Annotated[str, Form()] = ""
) -> Response:
    """Keep the invite token in an HttpOnly cookie and go to the labeling page."""
    check_csrf(request, csrf_token, field="csrf_token")
    refuse_if_guessing(request)
    rater = crud.rater_for_token(session, token=token)
    if rater is None:
        record_failed_auth(request)
        return _signin_error(request, UNKNOWN_INVITE, 404)
    return _sign_in(RedirectResponse("/label", status.HTTP_303_SEE_OTHER), request, token)


@router.post("/signout")
def sign_out(request: Request, csrf_token: Annotated[str, Form()] = "") -> Response:
    """Forget the session cookie."""
    check_csrf(request, csrf_token, field="csrf_token")
    response = RedirectResponse("/signed-out", status.HTTP_303_SEE_OTHER)
    response.delete_cookie(TOKEN_COOKIE)
    return response


@router.get("/signed-out")
def get_signed_out(request: Request) -> Response:
    """Where sign-out lands: how to sign in again."""
    return render(request, "signin.html", {"rater": None, "experiments": [], "error": None, "signed_out": True})


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
def get_label_page(experiment_id: PathId, request: Request, session: SessionDep) -> Response:
    """The labeling page: instructions, two synced clips, choice buttons and keyboard shortcuts."""
    principal = cookie_principal(request, session)
    if principal is None or principal.rater_id is None:
        return _signin_error(request, "Open your invite link to sign in.", 401)
    try:
        check_experiment_access(session, principal, experiment_id)
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
            # The counters come from the server, so a reload (or a second tab) shows the same ones.
            "progress": history.rater_progress(session, experiment_id=experiment_id, rater_id=principal.rater_id),
            "poll_ms": WAITING_POLL_MS,
        },
    )


# --------------------------------------------------------------------------------------------- admin pages


def _is_admin(request: Request, session: Session) -> bool:
    principal = cookie_principal(request, session)
    return principal is not None and principal.is_admin


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
    check_csrf(request, csrf_token, field="csrf_token")
    refuse_if_guessing(request)
    if not token or not hmac.compare_digest(crud.hash_token(token), request.app.state.admin_token_hash):
        record_failed_auth(request)
        return render(request, "admin_signin.html", {"error": "That is not the admin token."}, 401)
    return _sign_in(RedirectResponse("/admin/experiments", status.HTTP_303_SEE_OTHER), request, token)


@router.get("/admin/experiments")
def list_admin_experiments(request: Request, session: SessionDep) -> Response:
    """Every experiment, linking to its page."""
    if not _is_admin(request, session):
        return RedirectResponse("/admin", status.HTTP_303_SEE_OTHER)
    return render(request, "experiments.html", {"experiments": crud.list_experiments(session), "admin": True})


@router.get("/admin/experiments/new")
def get_new_experiment_page(request: Request, session: SessionDep) -> Response:
    """The form that creates an experiment (its script posts to /api/v1/experiments)."""
    if not _is_admin(request, session):
        return RedirectResponse("/admin", status.HTTP_303_SEE_OTHER)
    return render(request, "new_experiment.html", {"envs": ENVS, "teacher_modes": TEACHER_MODE_CHOICES})


@router.get("/admin/experiments/{experiment_id}")
def get_experiment_page(experiment_id: PathId, request: Request, session: SessionDep) -> Response:
    """Status, labels per rater, agreement, response times and live plots of one experiment."""
    if not _is_admin(request, session):
        return RedirectResponse("/admin", status.HTTP_303_SEE_OTHER)
    try:
        live = experiment_live_out(session, experiment_id).model_dump(mode="json")
    except NotFound:
        return render(request, "admin_signin.html", {"error": f"No experiment {experiment_id}."}, 404)
    return render(
        request,
        "experiment.html",
        {
            "live": live,
            "poll_ms": LIVE_POLL_MS,
            "teacher_modes": TEACHER_MODE_CHOICES,
            "lease_seconds": request.app.state.settings.lease_seconds,
        },
    )



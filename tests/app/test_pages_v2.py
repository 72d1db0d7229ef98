"""The second version's pages by template and context: the labeling page's server-kept counts, sign-out's
landing page, the new-experiment form and the experiment page's lease length."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from helpers import World
from test_pages import admin_browser, csrf_headers, sign_in_rater

from app.env_catalog import ENVS


def test_label_page_counts_come_from_the_server(app: FastAPI, world: World) -> None:
    browser = sign_in_rater(app, world.rater_tokens[0])
    pair_id = browser.post(f"/api/v1/experiments/{world.experiment_id}/leases", headers=csrf_headers(browser)).json()[
        "pair_id"
    ]
    labeled = browser.post("/api/v1/labels", json={"pair_id": pair_id, "choice": "left"}, headers=csrf_headers(browser))
    assert labeled.status_code == 201
    page = browser.get(f"/label/{world.experiment_id}")  # a reload
    progress = page.context["progress"]  # type: ignore[attr-defined]
    assert (progress.labels, progress.pairs_waiting) == (1, 2)
    assert 'id="session-count">1<' in page.text
    for text in ("Top is better", "Bottom is better", 'action="/signout"', "Your last answers", "Pause <kbd>P</kbd>"):
        assert text in page.text


def test_sign_out_lands_on_a_page_that_says_so(app: FastAPI, world: World) -> None:
    browser = sign_in_rater(app, world.rater_tokens[0])
    assert browser.get("/label").status_code == 303  # signed in: on to the labeling page
    signed_out = browser.post("/signout", data={"csrf_token": browser.cookies["rlhf_csrf"]})
    assert signed_out.status_code == 303 and signed_out.headers["location"] == "/signed-out"
    landing = browser.get("/signed-out")
    assert landing.status_code == 200 and landing.template.name == "signin.html"  # type: ignore[attr-defined]
    assert "You are signed out" in landing.text


def test_new_experiment_form_is_for_the_admin(app: FastAPI, client: TestClient, world: World) -> None:
    rater = sign_in_rater(app, world.rater_tokens[0])
    refused = rater.get("/admin/experiments/new")
    assert refused.status_code == 303 and refused.headers["location"] == "/admin"
    admin = admin_browser(app)
    page = admin.get("/admin/experiments/new")
    assert page.status_code == 200 and page.template.name == "new_experiment.html"  # type: ignore[attr-defined]
    assert page.context["envs"] == ENVS  # type: ignore[attr-defined]
    assert all(f'<option value="{env_id}"' in page.text for env_id in ENVS)
    listing = admin.get("/admin/experiments")
    assert 'href="/admin/experiments/new"' in listing.text
    experiment = admin.get(f"/admin/experiments/{world.experiment_id}")
    assert experiment.context["lease_seconds"] == 60  # type: ignore[attr-defined]
    assert 'id="pause-resume"' in experiment.text and "labels/export?format=csv" in experiment.text


def test_a_failed_experiments_page_says_why_and_offers_a_retry(app: FastAPI, world: World, session_factory) -> None:
    from app import crud

    admin = admin_browser(app)
    running = admin.get(f"/admin/experiments/{world.experiment_id}")
    assert '<div class="failure" id="failure" role="alert" hidden>' in running.text
    with session_factory() as session:
        changes = {"status": "failed", "error": "cannot import env module 'herding' <ModuleNotFoundError>"}
        crud.update_experiment(session, experiment_id=world.experiment_id, changes=changes)
    page = admin.get(f"/admin/experiments/{world.experiment_id}")
    assert page.context["live"]["experiment"]["error"] == changes["error"]  # type: ignore[attr-defined]
    assert '<div class="failure" id="failure" role="alert">' in page.text
    assert "cannot import env module &#39;herding&#39; &lt;ModuleNotFoundError&gt;" in page.text  # escaped
    assert ">Retry</button>" in page.text
    form = admin.get("/admin/experiments/new")
    assert 'data-own="true">Your own env (module:ClassName)' in form.text and 'id="own_env_id"' in form.text

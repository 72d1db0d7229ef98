"""The HTML pages by template and context (no browser), their scripts' cookie + CSRF calls to /api/v1, and the
agreement maths."""

from __future__ import annotations

import re
from typing import get_args

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from helpers import ADMIN_TOKEN, CARTPOLE, World, build_world, segment_json

from app.deps import CSRF_COOKIE, CSRF_HEADER
from app.pages import TEACHER_MODE_CHOICES
from app.stats import Agreement, LabelRecord, perfect_teacher_choice, summarize
from app.vocabulary import TeacherMode


def sign_in_rater(app: FastAPI, token: str) -> TestClient:
    """A browser-like client that followed the invite link and pressed "Start labeling"."""
    browser = TestClient(app, follow_redirects=False)
    page = browser.get(f"/invite/{token}")
    assert page.status_code == 200 and page.template.name == "signin.html"  # type: ignore[attr-defined]
    signed_in = browser.post(f"/invite/{token}", data={"csrf_token": page.context["csrf_token"]})  # type: ignore[attr-defined]
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/label"
    return browser


def csrf_headers(browser: TestClient) -> dict[str, str]:
    return {CSRF_HEADER: browser.cookies[CSRF_COOKIE]}


def test_invite_page_names_the_rater_and_their_experiments(app: FastAPI, world: World) -> None:
    with TestClient(app) as browser:
        page = browser.get(f"/invite/{world.rater_tokens[0]}")
        assert page.template.name == "signin.html"  # type: ignore[attr-defined]
        assert page.context["rater"].name == "rater0"  # type: ignore[attr-defined]
        assert [e.id for e in page.context["experiments"]] == [world.experiment_id]  # type: ignore[attr-defined]
        assert page.context["csrf_token"] == browser.cookies[CSRF_COOKIE]  # type: ignore[attr-defined]
        unknown = browser.get("/invite/not-a-token")
        assert unknown.status_code == 404 and "unknown" in unknown.context["error"]  # type: ignore[attr-defined]


def test_sign_in_sets_an_httponly_cookie_and_needs_csrf(app: FastAPI, world: World) -> None:
    browser = TestClient(app, follow_redirects=False)
    browser.get(f"/invite/{world.rater_tokens[0]}")
    forged = browser.post(f"/invite/{world.rater_tokens[0]}", data={"csrf_token": "guess"})
    assert forged.status_code == 403 and forged.json()["detail"].startswith("csrf_token: missing or wrong CSRF token")
    assert "rlhf_token" not in browser.cookies
    page = browser.get(f"/invite/{world.rater_tokens[0]}")
    signed_in = browser.post(f"/invite/{world.rater_tokens[0]}", data={"csrf_token": page.context["csrf_token"]})  # type: ignore[attr-defined]
    set_cookie = [v for k, v in signed_in.headers.multi_items() if k == "set-cookie" and v.startswith("rlhf_token=")]
    assert set_cookie and "httponly" in set_cookie[0].lower() and "samesite=lax" in set_cookie[0].lower()
    # One experiment: straight to its labeling page.
    listing = browser.get("/label")
    assert listing.status_code == 303 and listing.headers["location"] == f"/label/{world.experiment_id}"
    assert browser.post("/signout", data={"csrf_token": "guess"}).status_code == 403
    signed_out = browser.post("/signout", data={"csrf_token": browser.cookies[CSRF_COOKIE]})
    assert signed_out.status_code == 303 and "rlhf_token" not in browser.cookies
    assert browser.get("/label").status_code == 401


def test_label_page_context(app: FastAPI, world: World) -> None:
    browser = sign_in_rater(app, world.rater_tokens[0])
    page = browser.get(f"/label/{world.experiment_id}")
    assert page.status_code == 200 and page.template.name == "label.html"  # type: ignore[attr-defined]
    context = page.context  # type: ignore[attr-defined]
    assert context["experiment"].instructions == "Prefer the pole upright."
    assert context["rater_name"] == "rater0" and context["waiting"] == 3
    for text in ("Left is better", "Right is better", "Equally good", "Can't tell", "Undo last choice"):
        assert text in page.text
    assert page.text.count("<button") >= 8


def test_rater_sees_only_invited_experiments(app: FastAPI, client: TestClient, rng: np.random.Generator) -> None:
    mine = build_world(client, rng, pairs=1, raters=1, name="mine")
    other = build_world(client, rng, pairs=1, raters=0, name="other")
    browser = sign_in_rater(app, mine.rater_tokens[0])
    page = browser.get(f"/label/{other.experiment_id}")
    assert page.status_code == 403 and page.template.name == "signin.html"  # type: ignore[attr-defined]
    lease = browser.post(f"/api/v1/experiments/{other.experiment_id}/leases", headers=csrf_headers(browser))
    assert lease.status_code == 403
    assert browser.get("/label/999").status_code == 403
    anonymous = TestClient(app, follow_redirects=False)
    assert anonymous.get(f"/label/{mine.experiment_id}").status_code == 401


def test_the_page_leases_labels_and_undoes_through_the_api(app: FastAPI, client: TestClient, world: World) -> None:
    """What static/label.js does: the session cookie plus the CSRF header on /api/v1."""
    browser = sign_in_rater(app, world.rater_tokens[0])
    experiment = f"/api/v1/experiments/{world.experiment_id}"
    assert browser.get(f"{experiment}/pairs/waiting").json() == {"pairs_waiting": 3}  # a read: no CSRF needed
    leased = browser.post(f"{experiment}/leases", headers=csrf_headers(browser))
    assert leased.status_code == 200 and leased.json()["left"]["clip_url"].startswith("/api/v1/segments/")
    pair_id = leased.json()["pair_id"]
    body = {"pair_id": pair_id, "choice": "right", "response_time_ms": 1500, "idempotency_key": "k1"}
    labeled = browser.post("/api/v1/labels", json=body, headers=csrf_headers(browser))
    assert labeled.status_code == 201 and labeled.json()["rater_id"] == world.rater_ids[0]
    assert browser.get(f"{experiment}/pairs/waiting").json() == {"pairs_waiting": 2}
    again = browser.post("/api/v1/labels", json=body, headers=csrf_headers(browser))  # same key: same label
    assert again.status_code == 201 and again.json()["id"] == labeled.json()["id"]
    undone = browser.post(f"{experiment}/labels/undo", headers=csrf_headers(browser))
    assert undone.status_code == 200 and undone.json()["lease"]["pair_id"] == pair_id
    assert browser.get(f"{experiment}/pairs/waiting").json() == {"pairs_waiting": 3}
    body = {**body, "choice": "left", "idempotency_key": "k2"}
    assert browser.post("/api/v1/labels", json=body, headers=csrf_headers(browser)).status_code == 201
    exported = client.get(f"{experiment}/labels/export").text.splitlines()
    assert len(exported) == 1 and '"choice": "left"' in exported[0]
    assert browser.post(f"{experiment}/labels/undo", headers=csrf_headers(browser)).status_code == 200
    assert browser.post(f"{experiment}/labels/undo", headers=csrf_headers(browser)).status_code == 404


@pytest.mark.parametrize("csrf", [None, "guess"], ids=["no header", "wrong header"])
def test_cookie_writes_without_the_csrf_header_are_refused(
    app: FastAPI, client: TestClient, world: World, csrf: str | None
) -> None:
    browser = sign_in_rater(app, world.rater_tokens[0])
    headers = {} if csrf is None else {CSRF_HEADER: csrf}
    experiment = f"/api/v1/experiments/{world.experiment_id}"
    leased = browser.post(f"{experiment}/leases", headers=headers)
    assert leased.status_code == 403 and leased.json()["detail"].startswith(f"{CSRF_HEADER}: missing or wrong")
    pair_id = browser.post(f"{experiment}/leases", headers=csrf_headers(browser)).json()["pair_id"]
    labeled = browser.post("/api/v1/labels", json={"pair_id": pair_id, "choice": "left"}, headers=headers)
    assert labeled.status_code == 403
    assert browser.post(f"{experiment}/labels/undo", headers=headers).status_code == 403
    assert client.get(f"/api/v1/pairs/{pair_id}").json()["labels_count"] == 0
    # A bearer token is never sent by a browser on its own: it needs no CSRF header, cookie or not.
    bearer = browser.post("/api/v1/labels", json={"pair_id": pair_id, "choice": "left"}, headers=world.rater_headers())
    assert bearer.status_code == 201


def test_an_empty_queue_answers_no_content(app: FastAPI, client: TestClient, rng: np.random.Generator) -> None:
    world = build_world(client, rng, pairs=1, raters=1)
    browser = sign_in_rater(app, world.rater_tokens[0])
    url = f"/api/v1/experiments/{world.experiment_id}/leases"
    leased = browser.post(url, headers=csrf_headers(browser))
    assert leased.status_code == 200
    shown = {"exclude": leased.json()["pair_id"]}  # the page names the pairs it has
    assert browser.post(url, params=shown, headers=csrf_headers(browser)).status_code == 204
    assert browser.get(f"/api/v1/experiments/{world.experiment_id}/pairs/waiting").json() == {"pairs_waiting": 1}


def test_a_rater_cookie_cannot_reach_admin_routes(app: FastAPI, client: TestClient, world: World) -> None:
    browser = sign_in_rater(app, world.rater_tokens[0])
    experiment = f"/api/v1/experiments/{world.experiment_id}"
    assert browser.get(f"{experiment}/live").status_code == 403
    switched = browser.patch(experiment, json={"teacher_mode": "oracle"}, headers=csrf_headers(browser))
    assert switched.status_code == 403 and switched.json()["detail"] == "authorization: admin token required"
    assert browser.get(f"{experiment}/labels/export").status_code == 403
    assert client.get(experiment).json()["teacher_mode"] == "human"


def admin_browser(app: FastAPI) -> TestClient:
    browser = TestClient(app, follow_redirects=False)
    form = browser.get("/admin")
    assert form.template.name == "admin_signin.html"  # type: ignore[attr-defined]
    wrong = browser.post("/admin", data={"token": "nope", "csrf_token": form.context["csrf_token"]})  # type: ignore[attr-defined]
    assert wrong.status_code == 401 and wrong.context["error"]  # type: ignore[attr-defined]
    right = browser.post("/admin", data={"token": ADMIN_TOKEN, "csrf_token": form.context["csrf_token"]})  # type: ignore[attr-defined]
    assert right.status_code == 303 and right.headers["location"] == "/admin/experiments"
    return browser


def test_experiment_page_shows_agreement_and_metrics(
    app: FastAPI, client: TestClient, rng: np.random.Generator
) -> None:
    """Two raters label the same two pairs; true returns decide what a perfect teacher says."""
    experiment_id = client.post("/api/v1/experiments", json={**CARTPOLE, "labels_per_pair": 2}).json()["id"]
    segments = [segment_json(rng, true_rewards=[reward] * 5) for reward in (1.0, 0.0, 0.5, 0.5)]
    ids = client.post(f"/api/v1/experiments/{experiment_id}/segments", json={"segments": segments}).json()[
        "segment_ids"
    ]
    client.post(
        f"/api/v1/experiments/{experiment_id}/pairs",
        json={
            "pairs": [
                {"left_segment_id": ids[0], "right_segment_id": ids[1], "priority": 1},
                {"left_segment_id": ids[2], "right_segment_id": ids[3]},
            ]
        },
    )
    invites = [
        client.post("/api/v1/invites", json={"name": n, "experiment_ids": [experiment_id]}).json()
        for n in ("ann", "bob")
    ]
    answers = {"ann": ["left", "equal"], "bob": ["right", "equal"]}  # pair 1 (left truly better), pair 2 (tie)
    for invite in invites:
        headers = {"Authorization": f"Bearer {invite['token']}"}
        for choice in answers[invite["name"]]:
            lease = client.post(f"/api/v1/experiments/{experiment_id}/leases", headers=headers).json()
            body = {
                "pair_id": lease["pair_id"],
                "choice": choice,
                "response_time_ms": 1000 if invite["name"] == "ann" else 3000,
            }
            assert client.post("/api/v1/labels", json=body, headers=headers).status_code == 201
    for step, labels, accuracy, true_return in [(100, 2, 0.5, 10.0), (200, 4, 0.75, 30.0)]:
        client.post(
            f"/api/v1/experiments/{experiment_id}/metrics",
            json={
                "step": step,
                "values": {"labels/count": labels, "reward/val_accuracy": accuracy, "env/true_return": true_return},
            },
        )

    browser = admin_browser(app)
    page = browser.get(f"/admin/experiments/{experiment_id}")
    assert page.status_code == 200 and page.template.name == "experiment.html"  # type: ignore[attr-defined]
    live = page.context["live"]  # type: ignore[attr-defined]
    assert live["counts"]["labels"] == 4 and live["pairs_multiply_labeled"] == 2
    by_name = {rater["name"]: rater for rater in live["raters"]}
    assert by_name["ann"]["labels"] == 2 and by_name["ann"]["mean_response_ms"] == 1000
    assert by_name["ann"]["with_teacher"] == {"matches": 2, "compared": 2, "rate": 1.0}
    assert by_name["bob"]["with_teacher"] == {"matches": 1, "compared": 2, "rate": 0.5}
    assert by_name["ann"]["with_others"] == {"matches": 1, "compared": 2, "rate": 0.5}
    assert live["between_raters"] == {"matches": 1, "compared": 2, "rate": 0.5}
    assert live["series"]["reward/val_accuracy"] == [[100, 0.5], [200, 0.75]]
    assert live["series"]["env/true_return"] == [[100, 10.0], [200, 30.0]]
    polled = browser.get(f"/api/v1/experiments/{experiment_id}/live")  # what static/experiment.js polls
    assert polled.status_code == 200 and polled.json() == live
    assert client.get(f"/api/v1/experiments/{experiment_id}/live").json() == live  # the admin's bearer token too
    assert TestClient(app).get(f"/api/v1/experiments/{experiment_id}/live").status_code == 401
    rater = sign_in_rater(app, invites[0]["token"])
    assert rater.get(f"/admin/experiments/{experiment_id}").status_code == 303  # raters are sent to sign in


def test_admin_experiment_list_and_redirects(app: FastAPI, world: World) -> None:
    anonymous = TestClient(app, follow_redirects=False)
    assert anonymous.get("/admin/experiments").headers["location"] == "/admin"
    browser = admin_browser(app)
    listing = browser.get("/admin/experiments")
    assert listing.template.name == "experiments.html" and listing.context["admin"] is True  # type: ignore[attr-defined]
    assert [e.id for e in listing.context["experiments"]] == [world.experiment_id]  # type: ignore[attr-defined]
    assert browser.get("/static/label.js").status_code == 200


def test_experiment_page_shows_the_teacher_mode_with_a_switch(app: FastAPI, world: World) -> None:
    assert sorted(value for value, _text, _hint in TEACHER_MODE_CHOICES) == sorted(get_args(TeacherMode))
    browser = admin_browser(app)
    page = browser.get(f"/admin/experiments/{world.experiment_id}")
    assert page.status_code == 200 and page.template.name == "experiment.html"  # type: ignore[attr-defined]
    assert page.context["live"]["experiment"]["teacher_mode"] == "human"  # type: ignore[attr-defined]
    assert page.context["teacher_modes"] == TEACHER_MODE_CHOICES  # type: ignore[attr-defined]
    switch = page.text.split('id="mode-switch"')[1].split("</section>")[0]
    for text in ("Human", "Oracle", "Mixed"):
        assert f">{text}</button>" in switch
    assert re.findall(r'<button[^>]*data-mode="(\w+)"[^>]*aria-pressed="true"', switch) == ["human"]


def test_admin_switches_the_teacher_mode_from_the_page(app: FastAPI, client: TestClient, world: World) -> None:
    """What static/experiment.js does: PATCH the experiment with the admin's cookie and the CSRF header."""
    browser = admin_browser(app)
    browser.get(f"/admin/experiments/{world.experiment_id}")
    url = f"/api/v1/experiments/{world.experiment_id}"
    switched = browser.patch(url, json={"teacher_mode": "oracle"}, headers=csrf_headers(browser))
    assert switched.status_code == 200 and switched.json()["teacher_mode"] == "oracle"
    assert client.get(url).json()["teacher_mode"] == "oracle"
    assert browser.get(f"{url}/live").json()["experiment"]["teacher_mode"] == "oracle"  # what the page polls
    page = browser.get(f"/admin/experiments/{world.experiment_id}")
    assert page.context["live"]["experiment"]["teacher_mode"] == "oracle"  # type: ignore[attr-defined]
    missing = browser.patch("/api/v1/experiments/999", json={"teacher_mode": "human"}, headers=csrf_headers(browser))
    assert missing.status_code == 404


def test_refused_teacher_mode_switches_change_nothing(app: FastAPI, client: TestClient, world: World) -> None:
    browser = admin_browser(app)
    browser.get(f"/admin/experiments/{world.experiment_id}")
    url = f"/api/v1/experiments/{world.experiment_id}"
    bad = browser.patch(url, json={"teacher_mode": "robot"}, headers=csrf_headers(browser))
    assert bad.status_code == 422 and bad.json()["field"] == "teacher_mode"
    assert bad.json()["detail"].startswith("teacher_mode: ")
    no_csrf = browser.patch(url, json={"teacher_mode": "oracle"})
    assert no_csrf.status_code == 403 and no_csrf.json()["detail"].startswith(f"{CSRF_HEADER}: missing or wrong")
    assert browser.patch(url, json={"teacher_mode": "oracle"}, headers={CSRF_HEADER: "guess"}).status_code == 403
    anonymous = TestClient(app, follow_redirects=False)
    anonymous.get("/admin")  # gets a CSRF cookie, but no session
    assert anonymous.patch(url, json={"teacher_mode": "oracle"}, headers=csrf_headers(anonymous)).status_code == 401
    assert client.get(url).json()["teacher_mode"] == "human"


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [(2.0, 1.0, "left"), (1.0, 2.0, "right"), (1.5, 1.5, "equal"), (None, 1.0, None), (100.0, 100.00001, "equal")],
)
def test_perfect_teacher_choice(left: float | None, right: float | None, expected: str | None) -> None:
    assert perfect_teacher_choice(left, right) == expected


def test_summarize_counts_agreement_by_hand() -> None:
    """Three raters on one pair (2 of 3 rater pairs disagree), skips left out, unknown returns not compared."""
    records = [
        LabelRecord(1, 10, "left", 1000, 5.0, 1.0),
        LabelRecord(1, 11, "left", 2000, 5.0, 1.0),
        LabelRecord(1, 12, "right", None, 5.0, 1.0),
        LabelRecord(2, 10, "skip", 500, None, None),
        LabelRecord(2, 11, "left", 700, None, None),
        LabelRecord(3, 13, "equal", 100, 1.0, 1.0),
    ]
    result = summarize(records, [(10, "a", "human"), (11, "b", "human"), (12, "c", "human")])
    assert [r.name for r in result.raters] == ["a", "b", "c", "rater 13"]
    a, b, c, d = result.raters
    assert (a.labels, a.skips, a.mean_response_ms) == (2, 1, 750.0)
    assert a.with_others == Agreement(1, 2) and c.with_others == Agreement(0, 2)
    assert result.between_raters == Agreement(1, 3) and result.pairs_multiply_labeled == 1
    assert a.with_teacher == Agreement(1, 1) and c.with_teacher == Agreement(0, 1) and d.with_teacher == Agreement(1, 1)
    assert result.with_teacher == Agreement(3, 4)
    assert c.mean_response_ms is None and Agreement().rate is None

"""The raters' fast lane (app/hot_route.py): the usual lease and label skip FastAPI's dependency solving and
answer byte for byte as FastAPI's full path does; every other request takes the full path."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.requests import Request

import app.hot_route as hot_route
from app import crud, schemas
from app.hot_route import NOT_FAST, _json_body, _path_id, _rater_call


@pytest.fixture
def fast_lane_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The rater ids the fast lane served (it builds its RaterCall in app.hot_route; the full path in app.deps)."""
    served: list[int] = []

    class RecordedRaterCall(hot_route.RaterCall):
        def __init__(self, rater_id: int, *rest: object) -> None:
            super().__init__(rater_id, *rest)  # type: ignore[arg-type]
            served.append(rater_id)

    monkeypatch.setattr(hot_route, "RaterCall", RecordedRaterCall)
    return served


def forget_token(app: FastAPI, token: str) -> None:
    app.state.auth_cache.forget(crud.hash_token(token))


def test_lease_and_label_take_the_fast_lane_once_the_token_is_known_and_answer_as_the_full_path(
    app, client: TestClient, world, fast_lane_calls
):
    headers = world.rater_headers(0)
    leases = f"/api/v1/experiments/{world.experiment_id}/leases"
    first = client.post(leases, headers=headers)  # a token not yet in the auth cache: the full path
    assert first.status_code == 200 and fast_lane_calls == []
    second = client.post(leases, headers=headers)
    assert second.status_code == 200 and fast_lane_calls == [world.rater_ids[0]]
    # The pair the rater holds, its lease renewed: the same answer but for the later expiry, in the same format.
    assert {**second.json(), "expires_at": None} == {**first.json(), "expires_at": None}
    assert len(second.json()["expires_at"]) == len(first.json()["expires_at"])
    assert second.headers["content-type"] == first.headers["content-type"]

    body = {"pair_id": second.json()["pair_id"], "choice": "left", "response_time_ms": 900, "idempotency_key": "k1"}
    fast = client.post("/api/v1/labels", json=body, headers=headers)
    assert fast.status_code == 201 and len(fast_lane_calls) == 2
    forget_token(app, world.rater_tokens[0])
    full = client.post("/api/v1/labels", json=body, headers=headers)  # the same label again, on the full path
    assert full.status_code == 201 and len(fast_lane_calls) == 2
    assert full.content == fast.content and full.headers["content-type"] == fast.headers["content-type"]


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"json": {"pair_id": 1, "choice": "sideways"}}, 422, "choice"),
        ({"json": {"pair_id": 0, "choice": "left"}}, 422, "pair_id"),
        ({"content": b'{"pair_id": 1, "choice": "left"}', "headers": {"Content-Type": "text/plain"}}, 422, None),
    ],
)
def test_a_label_the_fast_lane_cannot_read_gets_the_full_paths_error(
    client: TestClient, world, fast_lane_calls, change, status, field
):
    headers = world.rater_headers(0)
    client.post(f"/api/v1/experiments/{world.experiment_id}/leases", headers=headers)  # the token is now known
    request = {"headers": headers, **change}
    request["headers"] = {**headers, **change.get("headers", {})}
    response = client.post("/api/v1/labels", **request)
    assert response.status_code == status, response.text
    if field is not None:
        assert response.json()["field"] == field
    assert fast_lane_calls == []


def test_a_lease_with_a_query_string_or_a_bad_id_takes_the_full_path(client: TestClient, world, fast_lane_calls):
    headers = world.rater_headers(0)
    leases = f"/api/v1/experiments/{world.experiment_id}/leases"
    held = client.post(leases, headers=headers).json()["pair_id"]  # the full path: the token was not known yet
    other = client.post(leases, params={"exclude": [held]}, headers=headers)
    assert other.status_code == 200 and other.json()["pair_id"] != held
    assert client.post("/api/v1/experiments/0/leases", headers=headers).status_code == 404
    assert client.post(leases, headers={"Authorization": "Bearer nobody"}).status_code == 401
    assert fast_lane_calls == []


def request_with(path_params: dict | None = None, headers: dict | None = None, body: bytes = b"") -> Request:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "path_params": path_params or {},
    }

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)


@pytest.mark.parametrize(
    ("text", "value"),
    [("7", 7), ("2147483647", 2147483647), ("0", NOT_FAST), ("2147483648", NOT_FAST), ("-3", NOT_FAST),
     ("٣", NOT_FAST), ("", NOT_FAST)],
)
def test_path_ids_outside_the_routes_bounds_are_left_to_the_full_path(text, value):
    assert asyncio.run(_path_id("experiment_id")(request_with({"experiment_id": text}))) == value


def test_a_body_is_read_only_when_it_is_json_of_the_right_shape():
    def read(content_type: str, body: bytes) -> object:
        request = request_with(headers={"Content-Type": content_type}, body=body)
        return asyncio.run(_json_body(schemas.LabelCreate)(request))

    good = b'{"pair_id": 3, "choice": "equal"}'
    assert read("application/json; charset=utf-8", good) == schemas.LabelCreate(pair_id=3, choice="equal")
    assert read("text/plain", good) is NOT_FAST
    assert read("application/json", b'{"pair_id": "3", "choice": "equal"}') is NOT_FAST  # strict: no "3" for 3


def test_no_token_at_all_means_the_full_path():
    assert asyncio.run(_rater_call(request_with(headers={"Authorization": "Basic abc"}))) is NOT_FAST
    assert asyncio.run(_rater_call(request_with())) is NOT_FAST


def test_the_labeling_page_takes_the_fast_lane_with_its_cookie_and_csrf_header(
    anonymous: TestClient, world, fast_lane_calls
):
    # The page signs in with the session cookie and sends the CSRF header on writes, as the full path requires.
    anonymous.cookies.set("rlhf_token", world.rater_tokens[0])
    anonymous.cookies.set("rlhf_csrf", "csrf-123")
    leases = f"/api/v1/experiments/{world.experiment_id}/leases"
    assert anonymous.post(leases, headers={"X-CSRF-Token": "csrf-123"}).status_code == 200  # the token: looked up
    lease = anonymous.post(leases, headers={"X-CSRF-Token": "csrf-123"})
    assert lease.status_code == 200 and fast_lane_calls == [world.rater_ids[0]]
    refused = anonymous.post(leases, headers={"X-CSRF-Token": "wrong"})
    assert refused.status_code == 403 and refused.json()["field"] == "X-CSRF-Token"
    body = {"pair_id": lease.json()["pair_id"], "choice": "right"}
    assert anonymous.post("/api/v1/labels", json=body).status_code == 403  # no CSRF header
    assert anonymous.post("/api/v1/labels", json=body, headers={"X-CSRF-Token": "csrf-123"}).status_code == 201
    assert fast_lane_calls == [world.rater_ids[0]] * 2

"""Tokens: admin vs rater, invitations, hashed storage, first-start admin token; bounded request bodies."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from helpers import CARTPOLE, World, build_world
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app import crud
from app.errors import Forbidden
from app.main import create_app, create_app_from_env
from app.models import AppSecret, Rater
from app.settings import Settings


def test_missing_or_wrong_token_gets_401_and_no_data(anonymous: TestClient, world: World) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        response = anonymous.get("/api/v1/experiments", headers=headers)
        assert response.status_code in (401, 403) if "Basic" in str(headers) else response.status_code == 401
        assert "cartpole" not in response.text
    response = anonymous.post("/api/v1/experiments", json={**CARTPOLE, "name": "sneaky"})
    assert response.status_code == 401
    assert anonymous.get(f"/api/v1/experiments/{world.experiment_id}/labels/export").status_code == 401


def test_rater_cannot_use_admin_endpoints(anonymous: TestClient, world: World) -> None:
    rater = world.rater_headers(0)
    for method, url, body in [
        ("POST", "/api/v1/experiments", {**CARTPOLE, "name": "mine"}),
        ("PATCH", f"/api/v1/experiments/{world.experiment_id}", {"teacher_mode": "oracle"}),
        ("POST", f"/api/v1/experiments/{world.experiment_id}/segments", {"segments": []}),
        ("POST", f"/api/v1/experiments/{world.experiment_id}/pairs", {"pairs": []}),
        ("GET", f"/api/v1/experiments/{world.experiment_id}/labels/export", None),
        ("POST", "/api/v1/invites", {"name": "friend"}),
    ]:
        response = anonymous.request(method, url, json=body, headers=rater)
        assert response.status_code == 403, (url, response.text)
    assert (
        anonymous.get(f"/api/v1/experiments/{world.experiment_id}", headers=rater).json()["teacher_mode"]
        == "human"
    )


def test_rater_sees_only_invited_experiments(
    client: TestClient, world: World, rng: np.random.Generator
) -> None:
    other = build_world(client, rng, pairs=1, raters=1, name="other")
    rater = world.rater_headers(0)
    names = [e["name"] for e in client.get("/api/v1/experiments", headers=rater).json()]
    assert names == ["cartpole"]
    assert client.get(f"/api/v1/experiments/{other.experiment_id}", headers=rater).status_code == 403
    assert client.post(f"/api/v1/experiments/{other.experiment_id}/leases", headers=rater).status_code == 403
    assert client.post("/api/v1/experiments/999/leases", headers=rater).status_code == 404
    assert (
        client.post(f"/api/v1/experiments/{world.experiment_id}/leases").status_code == 403
    )  # admin is no rater
    put = client.put(f"/api/v1/experiments/{other.experiment_id}/raters/{world.rater_ids[0]}")
    assert put.status_code == 204
    assert client.post(f"/api/v1/experiments/{other.experiment_id}/leases", headers=rater).status_code == 200


def test_tokens_are_stored_hashed(
    client: TestClient, world: World, session_factory: sessionmaker[Session]
) -> None:
    invite = client.post(
        "/api/v1/invites", json={"name": "carol", "experiment_ids": [world.experiment_id]}
    ).json()
    assert invite["invite_url"].endswith(f"/invite/{invite['token']}")
    with session_factory() as session:
        stored = session.scalars(select(Rater.token_hash)).all()
    assert invite["token"] not in stored and len(stored) == 3
    bad = client.post("/api/v1/invites", json={"name": "dave", "experiment_ids": [999]})
    assert bad.status_code == 404 and bad.json()["field"] == "experiment_ids[0]"
    assert len(client.get("/api/v1/raters").json()) == 3


def test_admin_token_generated_once_at_first_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    app = create_app(settings)
    token = app.state.generated_admin_token
    assert token and token in capsys.readouterr().err
    with app.state.session_factory() as session:
        assert session.get(AppSecret, "admin_token").value_hash != token
    app.state.engine.dispose()
    again = create_app(settings)  # second start: same token works, nothing printed
    assert again.state.generated_admin_token is None and token not in capsys.readouterr().err
    with TestClient(again) as client:
        assert (
            client.get("/api/v1/experiments", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        )
        assert client.get("/api/v1/experiments", headers={"Authorization": "Bearer guess"}).status_code == 401
    again.state.engine.dispose()


def test_oversized_bodies_get_413_and_store_nothing(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"max_body_bytes": 2000}))
    headers = {"Authorization": "Bearer test-admin-token"}
    with TestClient(app, headers=headers) as client:
        big = {**CARTPOLE, "instructions": "x" * 5000}
        assert client.post("/api/v1/experiments", json=big).status_code == 413

        def chunks():  # no Content-Length: counted while streaming
            yield b'{"name": "streamed", "env_id": "CartPole-v1", "obs_shape": [4], "num_actions": 2, '
            yield b'"instructions": "' + b"y" * 5000 + b'"}'

        response = client.post(
            "/api/v1/experiments", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 413
        assert response.json()["field"] == "body"
        assert client.get("/api/v1/experiments").json() == []
    app.state.engine.dispose()


def test_revoking_a_rater_keeps_their_labels_and_frees_their_pairs_at_once(
    client: TestClient, rng: np.random.Generator, session_factory: sessionmaker[Session]
) -> None:
    world = build_world(client, rng, pairs=3, raters=2)
    rater, revoked_id = world.rater_headers(0), world.rater_ids[0]
    url = f"/api/v1/experiments/{world.experiment_id}/leases"
    first = client.post(url, headers=rater).json()
    label = client.post("/api/v1/labels", json={"pair_id": first["pair_id"], "choice": "left"}, headers=rater)
    assert label.status_code == 201
    second = client.post(url, headers=rater).json()
    third = client.post(url, params={"exclude": second["pair_id"]}, headers=rater).json()
    assert client.post(f"/api/v1/raters/{revoked_id}/revoke", headers=rater).status_code == 403

    revoked = client.post(f"/api/v1/raters/{revoked_id}/revoke")
    assert revoked.status_code == 200 and revoked.json()["active"] is False
    assert client.post(f"/api/v1/raters/{revoked_id}/revoke").status_code == 200  # twice is harmless
    assert client.post("/api/v1/raters/999/revoke").status_code == 404
    assert client.get("/api/v1/experiments", headers=rater).status_code == 401
    assert client.get(f"/invite/{world.rater_tokens[0]}").status_code == 404
    # The two pairs held go back at once, to the other rater; the label stays.
    other = world.rater_headers(1)
    taken = client.post(url, headers=other).json()["pair_id"]
    also = client.post(url, params={"exclude": taken}, headers=other).json()["pair_id"]
    assert {taken, also} == {second["pair_id"], third["pair_id"]}
    assert client.get(f"/api/v1/experiments/{world.experiment_id}").json()["counts"]["labels"] == 1
    # Even where a web process still trusts the token from its cache, the rater leases and undoes nothing.
    with session_factory() as session:
        with pytest.raises(Forbidden):
            crud.lease_pair(session, experiment_id=world.experiment_id, rater_id=revoked_id, lease_seconds=9)
        with pytest.raises(Forbidden):
            crud.undo_last_label(session, experiment_id=world.experiment_id, rater_id=revoked_id, lease_seconds=9)


def test_a_revoked_token_is_refused_by_every_web_process_within_the_cache_ttl(
    settings: Settings, rng: np.random.Generator
) -> None:
    """Two web processes on one database: the one that revoked refuses the token at once; the other still
    knows it from its auth cache until the TTL runs out (app.deps.TtlCache: 5 s; here 1 s), and meanwhile the
    rater leases and labels nothing through it."""
    revoking, other = create_app(settings), create_app(settings)
    other.state.auth_cache.ttl_seconds = 1.0
    admin = {"Authorization": "Bearer test-admin-token"}
    try:
        with TestClient(revoking, headers=admin) as first, TestClient(other) as second:
            world = build_world(first, rng, pairs=3, raters=1)
            rater, url = world.rater_headers(0), f"/api/v1/experiments/{world.experiment_id}/leases"
            lease = second.post(url, headers=rater)  # the other process caches the token and the invitation
            cached_at = time.monotonic()
            assert lease.status_code == 200
            assert first.post(f"/api/v1/raters/{world.rater_ids[0]}/revoke").status_code == 200
            assert first.post(url, headers=rater).status_code == 401
            body = {"pair_id": lease.json()["pair_id"], "choice": "left"}
            assert second.post("/api/v1/labels", json=body, headers=rater).status_code in (401, 409)  # lease gone
            again = second.post(url, headers=rater)
            if time.monotonic() - cached_at < 0.5:  # surely cached still (at least half the TTL): the database refuses
                assert again.status_code == 403, again.text
                assert again.json()["detail"] == "authorization: the rater's token was revoked"
            assert again.status_code in (401, 403)
            time.sleep(1.05)
            assert second.post(url, headers=rater).status_code == 401
            assert first.get(f"/api/v1/experiments/{world.experiment_id}").json()["counts"]["labels"] == 0
    finally:
        revoking.state.engine.dispose()
        other.state.engine.dispose()


def test_failed_authentication_is_rate_limited_per_address(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"auth_failures_per_minute": 5}))
    admin = {"Authorization": "Bearer test-admin-token"}
    with TestClient(app, client=("10.0.0.1", 1000)) as guesser, TestClient(app, client=("10.0.0.2", 1000)) as other:
        invite = other.post("/api/v1/invites", json={"name": "alice"}, headers=admin).json()
        # Wrong bearer tokens, admin sign-ins and invite links all count against the address.
        for _ in range(3):
            assert guesser.get("/api/v1/experiments", headers={"Authorization": "Bearer guess"}).status_code == 401
        page = guesser.get("/admin")
        form = {"token": "guess", "csrf_token": page.context["csrf_token"]}  # type: ignore[attr-defined]
        assert guesser.post("/admin", data=form).status_code == 401
        assert guesser.get("/invite/guess").status_code == 404
        refused = guesser.get("/api/v1/experiments", headers={"Authorization": "Bearer guess"})
        assert refused.status_code == 429 and 0 < int(refused.headers["Retry-After"]) <= 60
        assert refused.json()["field"] == "authorization"
        assert guesser.get(f"/invite/{invite['token']}").status_code == 429  # guessing right does not help
        assert guesser.get("/api/v1/experiments", headers=admin).status_code == 429
        # Other addresses are not slowed, nor are requests that need no token.
        assert other.get("/api/v1/experiments", headers=admin).status_code == 200
        rater = {"Authorization": f"Bearer {invite['token']}"}
        assert other.get("/api/v1/experiments", headers=rater).status_code == 200
        assert guesser.get("/healthz").status_code == 200
    app.state.engine.dispose()


def test_a_short_admin_token_is_refused_at_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RLHF_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("RLHF_ADMIN_TOKEN", "letmein")
    with pytest.raises(ValidationError, match="RLHF_ADMIN_TOKEN has 7 characters; at least 16 are required"):
        create_app_from_env()
    assert Settings(admin_token="x" * 16).admin_token is not None


@pytest.mark.parametrize("trusted", ["", "10.0.0.0/8"])
def test_cookies_are_secure_behind_a_trusted_tls_proxy(settings: Settings, trusted: str) -> None:
    app = create_app(settings.model_copy(update={"forwarded_allow_ips": trusted}))
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
    with TestClient(app, client=("10.1.2.3", 1000), follow_redirects=False) as proxy:
        page = proxy.get("/admin", headers=forwarded)
        assert ("secure" in page.headers["set-cookie"].lower()) == bool(trusted)
        csrf = page.context["csrf_token"]  # type: ignore[attr-defined]
        proxy.cookies.set("rlhf_csrf", csrf)  # over plain http the client would not send a Secure cookie back
        signed_in = proxy.post("/admin", data={"token": "test-admin-token", "csrf_token": csrf}, headers=forwarded)
        assert signed_in.status_code == 303
        assert ("secure" in signed_in.headers["set-cookie"].lower()) == bool(trusted)
    app.state.engine.dispose()

"""Leases and labels: who may hold which pair, idempotent labels, undo, export and import."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import threading
from collections.abc import Callable, Iterable
from datetime import timedelta

import httpx
import numpy as np
from fastapi import FastAPI
from fastapi.testclient import TestClient
from helpers import World, build_world
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from app import crud
from app.models import Label, Lease, Pair


def _lease(client: TestClient, world: World, rater: int = 0, exclude: Iterable[int] = ()) -> dict | None:
    response = client.post(
        f"/api/v1/experiments/{world.experiment_id}/leases",
        params={"exclude": list(exclude)},
        headers=world.rater_headers(rater),
    )
    assert response.status_code in (200, 204), response.text
    return None if response.status_code == 204 else response.json()


def _label(client: TestClient, world: World, pair_id: int, choice: str = "left", rater: int = 0, **extra):
    return client.post(
        "/api/v1/labels",
        json={"pair_id": pair_id, "choice": choice, **extra},
        headers=world.rater_headers(rater),
    )


def test_two_raters_never_hold_the_same_pair(client: TestClient, world: World) -> None:
    first, second = _lease(client, world, rater=0), _lease(client, world, rater=1)
    assert first is not None
    held = [first, second, _lease(client, world, rater=0, exclude=[first["pair_id"]])]
    assert all(held)
    assert len({lease["pair_id"] for lease in held}) == 3  # type: ignore[index]
    assert held[0]["left"]["clip_url"] == f"/api/v1/segments/{held[0]['left']['id']}/clip"  # type: ignore[index]
    assert _lease(client, world, rater=1, exclude=[second["pair_id"]]) is None  # type: ignore[index]  # all held


def run_together(target: Callable[[int], None], arguments: Iterable[int]) -> None:
    """Call `target` once per argument, each in its own thread, all at once; return when all are done."""
    threads = [threading.Thread(target=target, args=(argument,)) for argument in arguments]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_label_flow_completes_pairs(client: TestClient, world: World) -> None:
    lease = _lease(client, world)
    assert lease is not None
    response = _label(client, world, lease["pair_id"], "right", response_time_ms=1234)
    assert response.status_code == 201, response.text
    assert response.json()["choice"] == "right" and response.json()["rater_id"] == world.rater_ids[0]
    pair = client.get(f"/api/v1/pairs/{lease['pair_id']}").json()
    assert pair["status"] == "complete" and pair["labels_count"] == 1
    again = _label(client, world, lease["pair_id"], "left")
    assert (
        again.status_code == 409 and again.json()["detail"] == "pair_id: this rater already labeled the pair"
    )
    counts = client.get(f"/api/v1/experiments/{world.experiment_id}").json()["counts"]
    assert counts["labels"] == 1 and counts["pairs_complete"] == 1


def test_several_labels_per_pair_each_rater_once(client: TestClient, rng: np.random.Generator) -> None:
    world = build_world(client, rng, pairs=1, raters=3, labels_per_pair=2)
    first, second = _lease(client, world, 0), _lease(client, world, 1)
    assert first and second and first["pair_id"] == second["pair_id"]
    assert _lease(client, world, 0)["pair_id"] == first["pair_id"]  # type: ignore[index]  # held: the same pair back
    assert _lease(client, world, 2) is None  # two places, both held
    assert _label(client, world, first["pair_id"], "left", rater=0).status_code == 201
    assert _lease(client, world, 0) is None  # labeled it: never again
    assert _label(client, world, second["pair_id"], "equal", rater=1).status_code == 201
    assert _lease(client, world, 2) is None  # complete
    assert client.get(f"/api/v1/pairs/{first['pair_id']}").json()["labels_count"] == 2


def _expire_every_lease(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        session.execute(update(Lease).values(expires_at=crud.utcnow() - timedelta(seconds=1)))
        session.commit()


def _one_expired_lease(
    client: TestClient, rng: np.random.Generator, session_factory: sessionmaker[Session], raters: int
) -> tuple[World, dict]:
    """One pair, leased by rater 0, the lease expired since."""
    world = build_world(client, rng, pairs=1, raters=raters)
    lease = _lease(client, world, 0)
    assert lease is not None
    _expire_every_lease(session_factory)
    return world, lease


def test_expired_lease_returns_the_pair(
    client: TestClient, rng: np.random.Generator, session_factory: sessionmaker[Session]
) -> None:
    world = build_world(client, rng, pairs=1, raters=2)
    lease = _lease(client, world, 0)
    assert lease is not None and _lease(client, world, 1) is None
    _expire_every_lease(session_factory)
    taken_over = _lease(client, world, 1)
    assert taken_over is not None and taken_over["pair_id"] == lease["pair_id"]
    late = _label(client, world, lease["pair_id"], "left", rater=0)
    assert late.status_code == 409
    assert late.json()["detail"] == "pair_id: the lease expired and the pair went to another rater"
    assert _label(client, world, lease["pair_id"], "right", rater=1).status_code == 201


def test_a_late_label_is_stored_while_nobody_took_the_pair(
    client: TestClient, rng: np.random.Generator, session_factory: sessionmaker[Session]
) -> None:
    world, lease = _one_expired_lease(client, rng, session_factory, raters=2)
    late = _label(client, world, lease["pair_id"], "left", rater=0)  # on PostgreSQL: decided in a transaction
    assert late.status_code == 201, late.text
    with session_factory() as session:
        assert session.scalar(select(Pair.labels_count)) == 1 and session.scalar(select(func.count(Lease.id))) == 0


def test_concurrent_retries_of_one_label_through_the_api_all_get_it_back(
    app: FastAPI, client: TestClient, rng: np.random.Generator, session_factory: sessionmaker[Session]
) -> None:
    # The API's path: on PostgreSQL the label runs statement by statement (DatabaseRunner.write), and the
    # requests that lose the claim of the lease to the first one must find its label, not a conflict.
    world = build_world(client, rng, pairs=3, raters=1)
    lease = _lease(client, world)
    assert lease is not None
    body = {"pair_id": lease["pair_id"], "choice": "left", "idempotency_key": "again"}

    async def twenty_at_once() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):  # this loop's own asynchronous connections
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as rater:
                posts = [rater.post("/api/v1/labels", json=body, headers=world.rater_headers(0)) for _ in range(20)]
                return await asyncio.gather(*posts)

    answers = asyncio.run(twenty_at_once())
    assert {answer.status_code for answer in answers} == {201}, [answer.text for answer in answers]
    assert len({answer.json()["id"] for answer in answers}) == 1
    with session_factory() as session:
        assert session.scalar(select(func.count(Label.id))) == 1
        assert session.scalar(select(Pair.labels_count).where(Pair.id == lease["pair_id"])) == 1


def test_label_without_lease_and_bad_labels(client: TestClient, world: World) -> None:
    no_lease = _label(client, world, world.pair_ids[0])
    assert no_lease.status_code == 409
    assert no_lease.json()["detail"] == "pair_id: the rater does not hold a lease on this pair"
    lease = _lease(client, world)
    assert lease is not None
    for body, field, code in [
        ({"pair_id": lease["pair_id"], "choice": "up"}, "choice", 422),
        ({"pair_id": lease["pair_id"]}, "choice", 422),
        ({"pair_id": 0, "choice": "left"}, "pair_id", 422),
        ({"pair_id": 999, "choice": "left"}, "pair_id", 404),
        ({"pair_id": lease["pair_id"], "choice": "left", "response_time_ms": -5}, "response_time_ms", 422),
        ({"pair_id": "one", "choice": "left"}, "pair_id", 422),
    ]:
        response = client.post("/api/v1/labels", json=body, headers=world.rater_headers(0))
        assert response.status_code == code, (body, response.text)
        assert response.json()["field"] == field
    other = _label(client, world, lease["pair_id"], rater=1)  # rater 1 does not hold it
    assert other.status_code == 409
    assert client.get(f"/api/v1/experiments/{world.experiment_id}").json()["counts"]["labels"] == 0


def test_idempotency_key_stores_one_label(client: TestClient, world: World) -> None:
    lease = _lease(client, world)
    assert lease is not None
    first = _label(client, world, lease["pair_id"], "left", idempotency_key="k-1", response_time_ms=900)
    replay = _label(client, world, lease["pair_id"], "left", idempotency_key="k-1", response_time_ms=900)
    assert first.status_code == replay.status_code == 201
    assert first.json() == replay.json()
    changed = _label(client, world, lease["pair_id"], "right", idempotency_key="k-1")
    assert changed.status_code == 409 and changed.json()["field"] == "idempotency_key"
    assert client.get(f"/api/v1/experiments/{world.experiment_id}").json()["counts"]["labels"] == 1


def _submit_at_once(session_factory: sessionmaker[Session], rater_id: int, pair_id: int, times: int) -> list[object]:
    """The same label with the same idempotency key, `times` at once; the label id or the error each got."""
    barrier = threading.Barrier(times)
    answers: list[object] = []

    def submit(_index: int) -> None:
        with session_factory() as session:
            barrier.wait()
            try:
                label, _created = crud.submit_label(
                    session, rater_id=rater_id, pair_id=pair_id, choice="left", idempotency_key=f"k{pair_id}"
                )
                answers.append(label.id)
            except Exception as error:  # recorded, and asserted by the caller
                answers.append(repr(error))

    run_together(submit, range(times))
    return answers


def test_concurrent_retries_of_one_label_all_get_it_back(
    client: TestClient, rng: np.random.Generator, session_factory: sessionmaker[Session]
) -> None:
    # A retried label must never be told it conflicted. On PostgreSQL, requests that waited for the pair's
    # row lock saw no label under the key and then collided with it on insert.
    world = build_world(client, rng, pairs=5, raters=1)
    for _ in world.pair_ids:
        lease = _lease(client, world)
        assert lease is not None
        answers = _submit_at_once(session_factory, world.rater_ids[0], lease["pair_id"], times=20)
        assert len(set(answers)) == 1 and isinstance(answers[0], int), answers
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Label)) == 5


def test_undo_last_label(client: TestClient, world: World) -> None:
    first = _lease(client, world)
    assert first is not None
    second = _lease(client, world, exclude=[first["pair_id"]])
    assert second is not None
    assert _label(client, world, first["pair_id"], "left").status_code == 201
    assert _label(client, world, second["pair_id"], "right").status_code == 201
    undo = client.post(
        f"/api/v1/experiments/{world.experiment_id}/labels/undo", headers=world.rater_headers(0)
    )
    assert undo.status_code == 200, undo.text
    assert undo.json()["label"]["pair_id"] == second["pair_id"]
    assert undo.json()["lease"]["pair_id"] == second["pair_id"]
    assert client.get(f"/api/v1/pairs/{second['pair_id']}").json()["status"] == "pending"
    assert _label(client, world, second["pair_id"], "equal").status_code == 201  # answer again
    nothing = client.post(
        f"/api/v1/experiments/{world.experiment_id}/labels/undo", headers=world.rater_headers(1)
    )
    assert nothing.status_code == 404 and nothing.json()["field"] == "label"


def test_release_lease(client: TestClient, rng: np.random.Generator) -> None:
    world = build_world(client, rng, pairs=1, raters=2)
    lease = _lease(client, world, 0)
    assert lease is not None
    assert (
        client.delete(f"/api/v1/leases/{lease['lease_id']}", headers=world.rater_headers(1)).status_code
        == 404
    )
    assert (
        client.delete(f"/api/v1/leases/{lease['lease_id']}", headers=world.rater_headers(0)).status_code
        == 204
    )
    assert _lease(client, world, 1) is not None


def test_a_rater_gets_held_pairs_first_and_holds_at_most_the_cap(client: TestClient, rng: np.random.Generator) -> None:
    world = build_world(client, rng, pairs=5, raters=2)  # the cap is 3 (RLHF_MAX_LEASES_PER_RATER)
    first = _lease(client, world)
    assert first is not None
    again = _lease(client, world)  # a reload: the held pair comes back, for a new term
    assert again is not None and again["expires_at"] > first["expires_at"]
    assert {**again, "expires_at": None} == {**first, "expires_at": None}
    # The page that left releases the term it was given: the term handed back since stays.
    late_beacon = client.post(
        f"/api/v1/leases/{first['lease_id']}/release",
        data={"expires_at": first["expires_at"]},
        headers=world.rater_headers(0),
    )
    assert late_beacon.status_code == 404
    still = _lease(client, world)
    assert still is not None and still["lease_id"] == again["lease_id"]
    second = _lease(client, world, exclude=[first["pair_id"]])
    assert second is not None
    third = _lease(client, world, exclude=[first["pair_id"], second["pair_id"]])
    assert third is not None
    shown = [first["pair_id"], second["pair_id"], third["pair_id"]]
    assert len(set(shown)) == 3
    assert _lease(client, world, exclude=shown) is None  # three held: no fourth
    assert _lease(client, world, rater=1) is not None  # the others stay in the queue for other raters
    assert _label(client, world, first["pair_id"]).status_code == 201
    fourth = _lease(client, world, exclude=shown)  # two held now: room for one more
    assert fourth is not None and fourth["pair_id"] not in shown


def test_concurrent_lease_calls_of_one_rater_stay_under_the_cap(
    client: TestClient, rng: np.random.Generator, session_factory: sessionmaker[Session]
) -> None:
    world = build_world(client, rng, pairs=5, raters=1)
    got: list[int | None] = []

    def lease(_index: int) -> None:
        with session_factory() as session:
            info = crud.lease_pair(
                session,
                experiment_id=world.experiment_id,
                rater_id=world.rater_ids[0],
                lease_seconds=120,
                max_held=2,
                exclude_pair_ids=set(world.pair_ids),  # asks for new pairs only
            )
            got.append(None if info is None else info.pair_id)

    run_together(lease, range(20))
    assert len([pair_id for pair_id in got if pair_id is not None]) == 2
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Lease)) == 2


def _hold_two(client: TestClient, world: World) -> tuple[dict, dict]:
    """Rater 0's first two leases."""
    first = _lease(client, world)
    assert first is not None
    second = _lease(client, world, exclude=[first["pair_id"]])
    assert second is not None
    return first, second


def _sign_in_as_the_page(anonymous: TestClient, world: World) -> None:
    """Rater 0's session cookie and the CSRF cookie "csrf-123", as the labeling page holds them."""
    anonymous.cookies.set("rlhf_token", world.rater_tokens[0])
    anonymous.cookies.set("rlhf_csrf", "csrf-123")


def test_release_by_beacon_takes_the_csrf_token_as_a_form_field(
    anonymous: TestClient, client: TestClient, world: World
) -> None:
    # navigator.sendBeacon sends the cookies and a form body, but no headers.
    first, second = _hold_two(client, world)
    _sign_in_as_the_page(anonymous, world)
    url = f"/api/v1/leases/{first['lease_id']}/release"
    assert anonymous.post(url).status_code == 403
    assert anonymous.post(url, data={"csrf_token": "wrong"}).status_code == 403
    assert anonymous.post(url, data={"csrf_token": "csrf-123"}).status_code == 204
    assert anonymous.post(url, data={"csrf_token": "csrf-123"}).status_code == 404  # released already
    bearer = client.post(f"/api/v1/leases/{second['lease_id']}/release", headers=world.rater_headers(0))
    assert bearer.status_code == 204
    assert _lease(client, world, rater=1) is not None


def test_a_leaving_page_releases_all_its_terms_in_one_beacon_and_a_renewed_term_stays(
    anonymous: TestClient, client: TestClient, world: World
) -> None:
    first, second = _hold_two(client, world)
    renewed = _lease(client, world)  # a reloaded page got the first pair back, for a new term
    assert renewed is not None and renewed["lease_id"] == first["lease_id"]
    _sign_in_as_the_page(anonymous, world)
    url = "/api/v1/leases/release"
    fields = {"lease_id": [first["lease_id"], second["lease_id"]], "expires_at": [first["expires_at"]]}
    mismatched = anonymous.post(url, data={"csrf_token": "csrf-123", **fields})
    assert mismatched.status_code == 422 and mismatched.json()["field"] == "expires_at"
    fields["expires_at"].append(second["expires_at"])
    assert anonymous.post(url, data=fields).status_code == 403  # no CSRF token
    assert anonymous.post(url, data={"csrf_token": "csrf-123", **fields}).status_code == 204
    # The old page's terms: the second pair is free for another rater; the first, renewed since, stays held.
    queue = client.get(f"/api/v1/experiments/{world.experiment_id}/queue").json()
    assert [lease["lease_id"] for lease in queue["leases"]] == [first["lease_id"]]
    assert anonymous.post(url, data={"csrf_token": "csrf-123", **fields}).status_code == 204  # nothing left: no-op


def test_export_jsonl_and_csv_then_import(client: TestClient, world: World, rng: np.random.Generator) -> None:
    for choice in ("left", "skip"):
        lease = _lease(client, world)
        assert lease is not None
        assert _label(client, world, lease["pair_id"], choice, response_time_ms=700).status_code == 201
    jsonl = client.get(f"/api/v1/experiments/{world.experiment_id}/labels/export")
    assert jsonl.status_code == 200 and jsonl.headers["content-type"].startswith("application/x-ndjson")
    records = [json.loads(line) for line in jsonl.text.splitlines()]
    assert [r["choice"] for r in records] == ["left", "skip"]
    assert records[0]["rater_name"] == "rater0" and records[0]["response_time_ms"] == 700
    assert {records[0]["left_segment_id"], records[0]["right_segment_id"]} <= set(world.segment_ids)
    rows = list(
        csv.DictReader(
            io.StringIO(
                client.get(
                    f"/api/v1/experiments/{world.experiment_id}/labels/export", params={"format": "csv"}
                ).text
            )
        )
    )
    assert [row["choice"] for row in rows] == ["left", "skip"] and rows[0]["label_id"] == str(
        records[0]["label_id"]
    )

    # Import into a second experiment with the same pair structure.
    other = build_world(client, rng, pairs=3, raters=0, name="copy")
    lines = [
        {**record, "pair_id": other.pair_ids[i], "idempotency_key": None} for i, record in enumerate(records)
    ]
    body = "\n".join(json.dumps(line) for line in lines).encode()
    url = f"/api/v1/experiments/{other.experiment_id}/labels/import"
    imported = client.post(url, content=body, headers={"Content-Type": "application/x-ndjson"})
    assert imported.status_code == 200, imported.text
    assert imported.json() == {"imported": 2}
    assert client.post(url, content=body).json() == {"imported": 0}  # identical re-import: nothing new
    assert client.get(f"/api/v1/experiments/{other.experiment_id}").json()["counts"]["labels"] == 2


def test_bad_import_stores_nothing(client: TestClient, world: World) -> None:
    url = f"/api/v1/experiments/{world.experiment_id}/labels/import"
    good = json.dumps({"pair_id": world.pair_ids[0], "rater_name": "bob", "choice": "left"})
    cases = [
        (
            good + "\n" + json.dumps({"pair_id": world.pair_ids[1], "rater_name": "bob", "choice": "up"}),
            422,
            "line 2.choice",
        ),
        (good + "\n{not json", 422, "line 2"),
        (
            good + "\n" + json.dumps({"pair_id": 999, "rater_name": "bob", "choice": "left"}),
            404,
            "line 2.pair_id",
        ),
        (
            good + "\n" + json.dumps({"pair_id": world.pair_ids[1], "rater_id": 999, "choice": "left"}),
            404,
            "line 2.rater_id",
        ),
        (json.dumps({"pair_id": world.pair_ids[1], "choice": "left"}), 422, "line 1"),
    ]
    for body, code, field in cases:
        response = client.post(url, content=body.encode())
        assert response.status_code == code, (field, response.text)
        assert response.json()["field"] == field, response.json()
    assert client.get(f"/api/v1/experiments/{world.experiment_id}").json()["counts"]["labels"] == 0


def test_concurrent_leases_and_labels(client: TestClient, rng: np.random.Generator, session_factory) -> None:
    """Eight raters in threads lease and label until the queue is empty: every pair labeled exactly once."""
    world = build_world(client, rng, pairs=40, raters=8)
    errors: list[str] = []

    def rate(index: int) -> None:
        while True:
            response = client.post(
                f"/api/v1/experiments/{world.experiment_id}/leases", headers=world.rater_headers(index)
            )
            if response.status_code == 204:
                return
            if response.status_code != 200:
                errors.append(response.text)
                return
            label = _label(client, world, response.json()["pair_id"], "left", rater=index)
            if label.status_code != 201:
                errors.append(label.text)

    run_together(rate, range(8))
    assert errors == []
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Label)) == 40
        per_pair = session.execute(select(Label.pair_id, func.count()).group_by(Label.pair_id)).all()
        assert all(count == 1 for _, count in per_pair) and len(per_pair) == 40
        assert session.scalar(select(func.count()).where(Pair.status != "complete")) == 0


def test_own_expired_lease_is_renewed(
    client: TestClient, rng: np.random.Generator, session_factory: sessionmaker[Session]
) -> None:
    world, first = _one_expired_lease(client, rng, session_factory, raters=1)
    again = _lease(client, world, 0)
    assert again is not None and again["pair_id"] == first["pair_id"]
    with session_factory() as session:
        leases = session.scalars(select(Lease)).all()
        assert len(leases) == 1 and crud.as_utc(leases[0].expires_at) > crud.utcnow()
    assert _label(client, world, first["pair_id"], "left").status_code == 201


def test_concurrent_raters_in_the_data_layer(
    client: TestClient, rng: np.random.Generator, session_factory: sessionmaker[Session]
) -> None:
    """Raters in threads, each with its own session and connection, run lease → label on pairs that want two
    labels: the row locks (PostgreSQL) or the write lock (SQLite) let no pair get a third."""
    world = build_world(client, rng, pairs=80, raters=8, labels_per_pair=2)
    errors: list[BaseException] = []

    def rate(rater_id: int) -> None:
        try:
            with session_factory() as session:
                while (
                    lease := crud.lease_pair(
                        session, experiment_id=world.experiment_id, rater_id=rater_id, lease_seconds=60
                    )
                ) is not None:
                    crud.submit_label(session, rater_id=rater_id, pair_id=lease.pair_id, choice="right")
        except BaseException as error:  # reported below; a thread's exception would otherwise vanish
            errors.append(error)

    run_together(rate, world.rater_ids)
    assert errors == []
    with session_factory() as session:
        per_pair = dict(session.execute(select(Label.pair_id, func.count()).group_by(Label.pair_id)).all())
        assert per_pair == {pair_id: 2 for pair_id in world.pair_ids}
        assert session.scalar(select(func.count()).select_from(Lease)) == 0

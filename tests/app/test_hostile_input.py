"""Input an attacker or a fuzzer sends: numbers past the columns' range, NUL characters, over-long keys, NaN
in JSON. Each gets a 4xx naming the field (404 for a path id), on SQLite and PostgreSQL, and stores nothing."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from helpers import CARTPOLE, World

BIG = 2**63  # past SQLite's 64-bit integers
HUGE_FOR_POSTGRES = (2**31, 2**62)  # past PostgreSQL's INTEGER; 2**62 still fits SQLite


def _refused(response, field: str, status: int = 422) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.json()["field"] == field, response.text


@pytest.mark.parametrize("value", [*HUGE_FOR_POSTGRES, BIG])
def test_ids_past_the_column_range_are_422_in_bodies_and_404_in_paths(
    client: TestClient, world: World, value: int
) -> None:
    rater = world.rater_headers(0)
    _refused(client.post("/api/v1/labels", json={"pair_id": value, "choice": "left"}, headers=rater), "pair_id")
    _refused(client.get(f"/api/v1/experiments/{value}"), "experiment_id", 404)
    _refused(client.get(f"/api/v1/experiments/{value}", headers=rater), "experiment_id", 404)
    _refused(client.get(f"/api/v1/segments/{value}/clip"), "segment_id", 404)
    _refused(client.get(f"/api/v1/pairs/{value}"), "pair_id", 404)
    _refused(client.post(f"/api/v1/experiments/{value}/labels/undo", headers=rater), "experiment_id", 404)
    _refused(client.post(f"/api/v1/experiments/{value}/leases", headers=rater), "experiment_id", 404)
    _refused(client.delete(f"/api/v1/leases/{value}", headers=rater), "lease_id", 404)
    _refused(client.put(f"/api/v1/experiments/{world.experiment_id}/raters/{value}"), "rater_id", 404)
    _refused(client.post("/api/v1/invites", json={"name": "x", "experiment_ids": [value]}), "experiment_ids[0]")
    pairs = {"pairs": [{"left_segment_id": world.segment_ids[0], "right_segment_id": value}]}
    _refused(client.post(f"/api/v1/experiments/{world.experiment_id}/pairs", json=pairs), "pairs[0].right_segment_id")
    line = json.dumps({"pair_id": value, "rater_name": "x", "choice": "left"})
    response = client.post(f"/api/v1/experiments/{world.experiment_id}/labels/import", content=line)
    _refused(response, "line 1.pair_id")
    assert client.get(f"/api/v1/experiments/{world.experiment_id}").json()["counts"]["labels"] == 0


@pytest.mark.parametrize("value", [2**31, BIG])
def test_counts_and_steps_past_the_column_range_are_422(client: TestClient, world: World, value: int) -> None:
    experiment = f"/api/v1/experiments/{world.experiment_id}"
    if value > 2**63 - 1:  # steps are 64-bit columns
        _refused(client.post(f"{experiment}/metrics", json={"step": value, "values": {"a/b": 1.0}}), "step")
        _refused(client.get(f"{experiment}/metrics", params={"after_step": value}), "after_step")
        segment = {"obs": [[0.0] * 4], "actions": [0], "policy_step": value}
        _refused(client.post(f"{experiment}/segments", json={"segments": [segment]}), "segments[0].policy_step")
        _refused(client.patch(experiment, json={"timestep_budget": value}), "timestep_budget")
    _refused(client.post("/api/v1/experiments", json={**CARTPOLE, "name": "n", "label_budget": value}), "label_budget")
    _refused(client.post("/api/v1/experiments", json={**CARTPOLE, "name": "n", "num_actions": value}), "num_actions")
    _refused(client.patch(experiment, json={"label_budget": value}), "label_budget")
    assert [e["name"] for e in client.get("/api/v1/experiments").json()] == ["cartpole"]
    assert client.get(f"{experiment}/metrics").json() == {}


def test_nul_characters_are_422_wherever_text_is_stored(client: TestClient, world: World) -> None:
    rater = world.rater_headers(0)
    lease = client.post(f"/api/v1/experiments/{world.experiment_id}/leases", headers=rater).json()
    body = {"pair_id": lease["pair_id"], "choice": "left", "idempotency_key": "k\x00"}
    _refused(client.post("/api/v1/labels", json=body, headers=rater), "idempotency_key")
    _refused(client.post("/api/v1/experiments", json={**CARTPOLE, "name": "a\x00b"}), "name")
    _refused(client.post("/api/v1/experiments", json={**CARTPOLE, "name": "n", "instructions": "\x00"}), "instructions")
    experiment = f"/api/v1/experiments/{world.experiment_id}"
    _refused(client.patch(experiment, json={"instructions": "x\x00"}), "instructions")
    _refused(client.post("/api/v1/invites", json={"name": "\x00"}), "name")
    _refused(client.post(f"{experiment}/metrics", json={"step": 1, "values": {"a\x00": 1.0}}), "values.a\x00.[key]")
    _refused(client.get(f"{experiment}/metrics", params={"key": "a\x00"}), "key[0]")
    line = json.dumps({"pair_id": world.pair_ids[0], "rater_name": "eve\x00", "choice": "left"})
    _refused(client.post(f"{experiment}/labels/import", content=line), "line 1.rater_name")
    assert client.get(experiment).json()["counts"]["labels"] == 0
    assert client.get(experiment).json()["instructions"] == CARTPOLE["instructions"]


def test_over_long_metric_keys_and_nan_in_config_are_422(client: TestClient, world: World) -> None:
    experiment = f"/api/v1/experiments/{world.experiment_id}"
    response = client.post(f"{experiment}/metrics", json={"step": 1, "values": {"k" * 201: 1.0}})
    assert response.status_code == 422 and response.json()["field"].startswith("values."), response.text
    assert client.get(f"{experiment}/metrics").json() == {}
    # A bare NaN is not JSON, but Python's parser (and FastAPI's) accepts it.
    body = json.dumps({**CARTPOLE, "name": "nan", "config": {"lr": float("nan"), "nested": [{"x": float("inf")}]}})
    response = client.post("/api/v1/experiments", content=body, headers={"Content-Type": "application/json"})
    _refused(response, "config")
    assert "NaN" in response.json()["detail"]


def test_null_for_a_field_that_always_has_a_value_is_422(client: TestClient, world: World) -> None:
    experiment = f"/api/v1/experiments/{world.experiment_id}"
    for field in ("status", "teacher_mode", "instructions"):
        _refused(client.patch(experiment, json={field: None}), field)
    assert client.get(experiment).json()["status"] == "created"
    client.patch(experiment, json={"label_budget": 10})
    response = client.patch(experiment, json={"label_budget": None})  # null clears a budget
    assert response.status_code == 200 and response.json()["label_budget"] is None


def test_values_of_the_wrong_type_are_not_coerced(client: TestClient, world: World) -> None:
    # Found by the fuzzer: false was stored as 0 and "5" would have been 5.
    experiment = f"/api/v1/experiments/{world.experiment_id}"
    _refused(client.post(f"{experiment}/metrics", json={"step": False, "values": {"a/b": 1.0}}), "step")
    _refused(client.patch(experiment, json={"timestep_budget": False}), "timestep_budget")
    _refused(client.patch(experiment, json={"label_budget": "5"}), "label_budget")
    segment = {"obs": [[0.0] * 4], "actions": [0], "ended": [1]}
    _refused(client.post(f"{experiment}/segments", json={"segments": [segment]}), "segments[0].ended[0]")
    assert client.get(f"{experiment}/metrics").json() == {}
    assert client.get(experiment).json()["timestep_budget"] is None


def test_an_empty_import_is_422(client: TestClient, world: World) -> None:
    for body in (b"", b"\n \n"):
        _refused(client.post(f"/api/v1/experiments/{world.experiment_id}/labels/import", content=body), "body")

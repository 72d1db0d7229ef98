"""Experiments over the API: create, list, read with counts and metrics, update; bad input is refused."""

from __future__ import annotations

from fastapi.testclient import TestClient
from helpers import CARTPOLE, World


def test_create_list_get_update(client: TestClient) -> None:
    created = client.post("/api/v1/experiments", json=CARTPOLE)
    assert created.status_code == 201, created.text
    experiment = created.json()
    assert experiment["teacher_mode"] == "human" and experiment["counts"]["segments"] == 0
    assert client.get("/api/v1/experiments").json()[0]["name"] == "cartpole"

    patched = client.patch(
        f"/api/v1/experiments/{experiment['id']}", json={"teacher_mode": "mixed", "instructions": "Upright!"}
    )
    assert patched.status_code == 200
    assert patched.json()["teacher_mode"] == "mixed"
    assert client.get(f"/api/v1/experiments/{experiment['id']}").json()["instructions"] == "Upright!"


def test_counts_and_latest_metrics(client: TestClient, world: World) -> None:
    experiment_id = world.experiment_id
    for step, value in ((100, 10.0), (200, 25.5)):
        response = client.post(
            f"/api/v1/experiments/{experiment_id}/metrics",
            json={"step": step, "values": {"env/true_return": value}},
        )
        assert response.status_code == 204
    body = client.get(f"/api/v1/experiments/{experiment_id}").json()
    assert body["counts"] == {
        "segments": 6,
        "pairs_pending": 3,
        "pairs_complete": 0,
        "labels": 0,
        "raters": 2,
    }
    assert body["latest_metrics"] == {"env/true_return": {"step": 200, "value": 25.5}}
    series = client.get(f"/api/v1/experiments/{experiment_id}/metrics", params={"after_step": 100}).json()
    assert series == {"env/true_return": [{"step": 200, "value": 25.5}]}


def test_bad_experiment_input(client: TestClient) -> None:
    cases = [
        ({**CARTPOLE, "teacher_mode": "robot"}, "teacher_mode"),
        ({**CARTPOLE, "labels_per_pair": 0}, "labels_per_pair"),
        ({**CARTPOLE, "obs_shape": []}, "obs_shape"),
        ({**CARTPOLE, "obs_shape": [0]}, "obs_shape[0]"),
        ({**CARTPOLE, "num_actions": None}, "num_actions"),
        ({**CARTPOLE, "colour": "red"}, "colour"),
        ({k: v for k, v in CARTPOLE.items() if k != "env_id"}, "env_id"),
    ]
    for body, field in cases:
        response = client.post("/api/v1/experiments", json=body)
        assert response.status_code == 422, (field, response.text)
        assert response.json()["field"] == field
        assert field in response.json()["detail"]
    assert client.get("/api/v1/experiments").json() == []  # nothing stored


def test_duplicate_name_and_unknown_ids(client: TestClient) -> None:
    assert client.post("/api/v1/experiments", json=CARTPOLE).status_code == 201
    duplicate = client.post("/api/v1/experiments", json=CARTPOLE)
    assert duplicate.status_code == 409 and duplicate.json()["field"] == "name"
    missing = client.get("/api/v1/experiments/999")
    assert missing.status_code == 404 and missing.json()["detail"] == "experiment_id: no experiment 999"
    assert client.patch("/api/v1/experiments/999", json={"teacher_mode": "oracle"}).status_code == 404
    nan_metric = client.post(
        "/api/v1/experiments/1/metrics",
        content=b'{"step": 1, "values": {"x": NaN}}',
        headers={"Content-Type": "application/json"},
    )
    assert nan_metric.status_code == 422 and nan_metric.json()["field"] == "values.x"
    bad_update = client.patch("/api/v1/experiments/1", json={"status": "exploded"})
    assert bad_update.status_code == 422 and bad_update.json()["field"] == "status"
    assert client.get("/api/v1/experiments/1").json()["status"] == "created"


def test_malformed_json(client: TestClient) -> None:
    response = client.post(
        "/api/v1/experiments", content=b'{"name": "x",', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["field"] == "body"


def test_openapi_documents_routes_with_examples(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "/api/v1/experiments/{experiment_id}/leases" in spec["paths"]
    assert spec["paths"]["/api/v1/labels"]["post"]["summary"] == "Submit Label"
    assert spec["components"]["schemas"]["LabelCreate"]["examples"][0]["choice"] == "left"
    assert client.get("/healthz").json()["status"] == "ok"


def test_a_failed_experiment_shows_its_error_until_it_is_set_back(client: TestClient, session_factory) -> None:
    from app import crud

    own = {**CARTPOLE, "name": "own", "env_id": "my_envs.herding:Herding"}  # the web process never imports it
    experiment_id = client.post("/api/v1/experiments", json=own).json()["id"]
    assert client.get(f"/api/v1/experiments/{experiment_id}").json()["error"] is None
    with session_factory() as session:  # as the worker's store does
        changes = {"status": "failed", "error": "cannot import env module 'my_envs.herding'"}
        crud.update_experiment(session, experiment_id=experiment_id, changes=changes)
    failed = client.get(f"/api/v1/experiments/{experiment_id}").json()
    assert (failed["env_id"], failed["status"], failed["error"]) == (own["env_id"], "failed", changes["error"])
    live = client.get(f"/api/v1/experiments/{experiment_id}/live").json()["experiment"]
    assert live["error"] == changes["error"]
    assert client.patch(f"/api/v1/experiments/{experiment_id}", json={"error": None}).status_code == 422
    retried = client.patch(f"/api/v1/experiments/{experiment_id}", json={"status": "created"}).json()
    assert (retried["status"], retried["error"]) == ("created", None)

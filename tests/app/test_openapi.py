"""/openapi.json describes what each route really answers, with the bodies the service really sends, so that
generated clients and fuzzers can trust it."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from helpers import World

from app.schemas import ErrorOut, ValidationErrorOut

BAD_OBS = {"obs": [[1.0]], "actions": [0]}  # CartPole observations have 4 numbers


def test_every_route_documents_its_errors_with_the_real_bodies(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in json.dumps(spec)
    operations = [
        (method, path, operation)
        for path, methods in spec["paths"].items()
        if path.startswith("/api/v1/")
        for method, operation in methods.items()
    ]
    assert len(operations) == 38
    for method, path, operation in operations:
        documented = set(operation["responses"])
        assert {"401", "403", "413", "422", "429"} <= documented, (method, path)
        if "{" in path:
            assert "404" in documented, (method, path)
        schema = operation["responses"]["422"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ValidationErrorOut"}, (method, path)
        assert "Retry-After" in operation["responses"]["429"]["headers"]
    labels = spec["paths"]["/api/v1/labels"]["post"]["responses"]
    assert {"404", "409"} <= set(labels)


def test_error_bodies_match_the_documented_schemas(anonymous: TestClient, client: TestClient, world: World) -> None:
    rater = world.rater_headers(0)
    for response, status in [
        (anonymous.get("/api/v1/experiments"), 401),
        (client.post(f"/api/v1/experiments/{world.experiment_id}/leases"), 403),  # the admin is no rater
        (client.get("/api/v1/experiments/999"), 404),
        (client.get("/api/v1/experiments/abc"), 404),
        (client.post("/api/v1/labels", json={"pair_id": world.pair_ids[0], "choice": "left"}, headers=rater), 409),
        (client.post("/api/v1/experiments", content=b"\xff", headers={"Content-Type": "application/json"}), 400),
    ]:
        assert response.status_code == status, response.text
        ErrorOut.model_validate(response.json())
    for response in (
        client.post("/api/v1/experiments", json={"name": ""}),  # schema validation
        # the data layer's check of the experiment's spaces
        client.post(f"/api/v1/experiments/{world.experiment_id}/segments", json={"segments": [BAD_OBS]}),
    ):
        assert response.status_code == 422, response.text
        body = ValidationErrorOut.model_validate(response.json())
        assert body.errors[0].field == body.field

"""What the data-service tests build through the API: a CartPole experiment, segments, a world of pairs and
raters. Imported by name (`from helpers import ...`); tests/app/conftest.py holds the fixtures."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from fastapi.testclient import TestClient

ADMIN_TOKEN = "test-admin-token"


CARTPOLE = {
    "name": "cartpole",
    "env_id": "CartPole-v1",
    "obs_shape": [4],
    "action_shape": [],
    "action_dtype": "int64",
    "num_actions": 2,
    "instructions": "Prefer the pole upright.",
}


def segment_json(rng: np.random.Generator, length: int = 5, **extra: object) -> dict:
    return {
        "obs": rng.normal(size=(length, 4)).round(4).tolist(),
        "actions": rng.integers(0, 2, size=length).tolist(),
        "true_rewards": [1.0] * length,
        "ended": [False] * length,
        **extra,
    }


@dataclass
class World:
    """An experiment with segments, pairs and invited raters, made through the API."""

    experiment_id: int
    segment_ids: list[int]
    pair_ids: list[int]
    rater_tokens: list[str]
    rater_ids: list[int]

    def rater_headers(self, index: int = 0) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.rater_tokens[index]}"}


def build_world(
    client: TestClient,
    rng: np.random.Generator,
    pairs: int = 3,
    raters: int = 2,
    labels_per_pair: int = 1,
    name: str = "cartpole",
) -> World:
    response = client.post(
        "/api/v1/experiments", json={**CARTPOLE, "name": name, "labels_per_pair": labels_per_pair}
    )
    assert response.status_code == 201, response.text
    experiment_id = response.json()["id"]
    segments = [segment_json(rng) for _ in range(pairs * 2)]
    response = client.post(f"/api/v1/experiments/{experiment_id}/segments", json={"segments": segments})
    assert response.status_code == 201, response.text
    segment_ids = response.json()["segment_ids"]
    body = {
        "pairs": [
            {"left_segment_id": a, "right_segment_id": b}
            for a, b in zip(segment_ids[::2], segment_ids[1::2], strict=True)
        ]
    }
    response = client.post(f"/api/v1/experiments/{experiment_id}/pairs", json=body)
    assert response.status_code == 201, response.text
    invites = [
        client.post("/api/v1/invites", json={"name": f"rater{i}", "experiment_ids": [experiment_id]}).json()
        for i in range(raters)
    ]
    return World(
        experiment_id=experiment_id,
        segment_ids=segment_ids,
        pair_ids=response.json()["pair_ids"],
        rater_tokens=[invite["token"] for invite in invites],
        rater_ids=[invite["rater_id"] for invite in invites],
    )

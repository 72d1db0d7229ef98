"""Segments: arrays stored compactly and checked against the experiment's spaces; bad ones store nothing."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient
from helpers import CARTPOLE, build_world, segment_json


def _experiment(client: TestClient, **overrides: object) -> int:
    response = client.post("/api/v1/experiments", json={**CARTPOLE, **overrides})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_queue_and_read_back_arrays(client: TestClient, rng: np.random.Generator) -> None:
    experiment_id = _experiment(client)
    segment = segment_json(rng, length=4, seed=3, policy_step=2048)
    segment["ended"] = [False, False, True, True]
    unknown_rewards = {k: v for k, v in segment_json(rng, length=4).items() if k != "true_rewards"}
    response = client.post(
        f"/api/v1/experiments/{experiment_id}/segments", json={"segments": [segment, unknown_rewards]}
    )
    assert response.status_code == 201, response.text
    first, second = response.json()["segment_ids"]
    assert response.json()["render_job_ids"] == []

    stored = client.get(f"/api/v1/segments/{first}", params={"include_arrays": True}).json()
    assert np.allclose(stored["obs"], segment["obs"], atol=1e-6)
    assert stored["actions"] == segment["actions"]
    assert stored["ended"] == [False, False, True, True]
    assert stored["true_return"] == 4.0 and stored["seed"] == 3 and stored["policy_step"] == 2048
    assert stored["clip_status"] == "none"
    assert (
        client.get(f"/api/v1/segments/{second}", params={"include_arrays": True}).json()["true_rewards"]
        is None
    )


def test_continuous_actions(client: TestClient, rng: np.random.Generator) -> None:
    experiment_id = _experiment(
        client,
        name="pendulum",
        env_id="Pendulum-v1",
        obs_shape=[3],
        action_shape=[1],
        action_dtype="float32",
        num_actions=None,
    )
    good = {"obs": rng.normal(size=(3, 3)).tolist(), "actions": [[0.5], [-1.0], [2.0]]}
    assert (
        client.post(f"/api/v1/experiments/{experiment_id}/segments", json={"segments": [good]}).status_code
        == 201
    )
    flat = {"obs": good["obs"], "actions": [0.5, -1.0, 2.0]}
    response = client.post(f"/api/v1/experiments/{experiment_id}/segments", json={"segments": [flat]})
    assert response.status_code == 422 and response.json()["field"] == "segments[0].actions"


def test_bad_segments_are_refused_and_store_nothing(client: TestClient, rng: np.random.Generator) -> None:
    experiment_id = _experiment(client)
    good = segment_json(rng, length=3)
    cases = [
        ({**good, "obs": [[0.0, 0.0, 0.0]] * 3}, "segments[1].obs"),  # obs_dim 3, not 4
        ({**good, "obs": [[0.0] * 4, [0.0] * 3, [0.0] * 4]}, "segments[1].obs"),  # ragged
        ({**good, "obs": [["a"] * 4] * 3}, "segments[1].obs"),
        ({**good, "actions": [0, 1]}, "segments[1].actions"),  # length 2, not 3
        ({**good, "actions": [0, 2, 1]}, "segments[1].actions"),  # out of [0, 2)
        ({**good, "actions": [0, 0.5, 1]}, "segments[1].actions"),  # not integers
        ({**good, "actions": [-1, 0, 1]}, "segments[1].actions"),
        ({**good, "true_rewards": [1.0, 1.0]}, "segments[1].true_rewards"),
        ({**good, "ended": [False]}, "segments[1].ended"),
        ({**good, "obs": [[1e39] * 4] * 3}, "segments[1].obs"),  # overflows float32 → inf
        ({**good, "seed": -1}, "segments[1].seed"),
        ({**good, "render": {"seed": 1, "first_frame": -2}}, "segments[1].render.first_frame"),
        ({**good, "velocity": 3}, "segments[1].velocity"),
    ]
    url = f"/api/v1/experiments/{experiment_id}/segments"
    for bad, field in cases:
        response = client.post(url, json={"segments": [good, bad]})
        assert response.status_code == 422, (field, response.text)
        assert response.json()["field"] == field, response.json()
    for literal in (b"NaN", b"Infinity", b"-Infinity"):
        body = b'{"segments": [{"obs": [[0, 0, 0, %s]], "actions": [1]}]}' % literal
        response = client.post(url, content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 422 and response.json()["field"] == "segments[0].obs"
        body = b'{"segments": [{"obs": [[0, 0, 0, 0]], "actions": [1], "true_rewards": [%s]}]}' % literal
        response = client.post(url, content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 422 and response.json()["field"] == "segments[0].true_rewards[0]"
    assert client.post("/api/v1/experiments/999/segments", json={"segments": [good]}).status_code == 404
    assert client.post(url, json={"segments": []}).status_code == 422
    assert client.get(f"/api/v1/experiments/{experiment_id}").json()["counts"]["segments"] == 0
    assert client.get("/api/v1/segments/1").status_code == 404


def test_render_spec_queues_a_job(client: TestClient, rng: np.random.Generator) -> None:
    experiment_id = _experiment(client)
    segment = segment_json(rng, length=3, render={"seed": 11})
    response = client.post(f"/api/v1/experiments/{experiment_id}/segments", json={"segments": [segment]})
    assert response.status_code == 201
    assert len(response.json()["render_job_ids"]) == 1
    segment_id = response.json()["segment_ids"][0]
    stored = client.get(f"/api/v1/segments/{segment_id}").json()
    assert stored["clip_status"] == "queued" and stored["seed"] == 11
    assert client.get(f"/api/v1/segments/{segment_id}/clip").status_code == 404  # not rendered yet


def test_raters_never_see_the_ground_truth(client: TestClient, rng: np.random.Generator) -> None:
    world = build_world(client, rng, pairs=1, raters=1)
    segment_id = world.segment_ids[0]
    admin_view = client.get(f"/api/v1/segments/{segment_id}").json()
    assert admin_view["true_return"] == 5.0
    for params in ({}, {"include_arrays": True}):
        response = client.get(f"/api/v1/segments/{segment_id}", params=params, headers=world.rater_headers(0))
        assert response.status_code == 200, response.text
        seen = response.json()
        assert seen["clip_url"] == admin_view["clip_url"] and seen["clip_status"] == "none"
        # Nothing the synthetic teacher answers from, nor what tells the newer policy or replays the episode.
        assert not {"true_return", "true_rewards", "obs", "actions", "seed", "policy_step"} & set(seen)

"""A rater's progress, history and label changes; the admin's queue, disagreements, dropped labels, policy clip."""

from __future__ import annotations

import json

import numpy as np
from fastapi.testclient import TestClient
from helpers import World, build_world

from app import crud
from app.settings import Settings


def lease(client: TestClient, world: World, rater: int, shown: tuple[int, ...] = ()) -> int:
    """A pair for the rater; `shown` are pairs it holds already on screen (a lease hands those back first)."""
    response = client.post(
        f"/api/v1/experiments/{world.experiment_id}/leases",
        params={"exclude": list(shown)},
        headers=world.rater_headers(rater),
    )
    assert response.status_code == 200, response.text
    return int(response.json()["pair_id"])


def label(client: TestClient, world: World, rater: int, pair_id: int, choice: str) -> dict:
    response = client.post(
        "/api/v1/labels", json={"pair_id": pair_id, "choice": choice}, headers=world.rater_headers(rater)
    )
    assert response.status_code == 201, response.text
    return response.json()


def progress(client: TestClient, world: World, rater: int) -> dict:
    response = client.get(f"/api/v1/experiments/{world.experiment_id}/progress", headers=world.rater_headers(rater))
    assert response.status_code == 200, response.text
    return response.json()


def test_progress_counts_labels_across_sessions_and_pairs_others_hold(client: TestClient, world: World) -> None:
    assert progress(client, world, 0) == {"labels": 0, "pairs_waiting": 3, "held_by_others": 0, "holding": 0}
    first = lease(client, world, 0)
    lease(client, world, 0, shown=(first,))
    assert progress(client, world, 1) == {"labels": 0, "pairs_waiting": 3, "held_by_others": 2, "holding": 0}
    label(client, world, 0, first, "left")
    assert progress(client, world, 0) == {"labels": 1, "pairs_waiting": 2, "held_by_others": 0, "holding": 1}
    assert progress(client, world, 1) == {"labels": 0, "pairs_waiting": 2, "held_by_others": 1, "holding": 0}
    assert client.get(f"/api/v1/experiments/{world.experiment_id}/progress").status_code == 403  # admin: no rater


def test_history_lists_answers_newest_first_and_a_change_replaces_one(client: TestClient, world: World) -> None:
    experiment = f"/api/v1/experiments/{world.experiment_id}"
    pairs: list[int] = []
    for _ in range(3):
        pairs.append(lease(client, world, 0, shown=tuple(pairs)))
    choices = ["left", "right", "skip"]
    labels = [label(client, world, 0, pair_id, choice) for pair_id, choice in zip(pairs, choices, strict=True)]
    history = client.get(f"{experiment}/labels/mine", headers=world.rater_headers(0)).json()
    assert [entry["label_id"] for entry in history] == [lab["id"] for lab in reversed(labels)]
    assert history[2]["choice"] == "left" and history[2]["left"]["poster_url"].endswith("/poster")
    assert all(entry["changeable"] for entry in history)
    assert client.get(f"{experiment}/labels/mine", headers=world.rater_headers(1)).json() == []

    changed = client.put(f"/api/v1/labels/{labels[0]['id']}", json={"choice": "equal"}, headers=world.rater_headers(0))
    assert changed.status_code == 200, changed.text
    assert changed.json()["id"] != labels[0]["id"] and changed.json()["choice"] == "equal"
    assert changed.json()["pair_id"] == pairs[0]
    exported = [json.loads(line) for line in client.get(f"{experiment}/labels/export").text.splitlines()]
    assert sorted((record["pair_id"], record["choice"]) for record in exported) == sorted(
        [(pairs[0], "equal"), (pairs[1], "right"), (pairs[2], "skip")]
    )
    pair = client.get(f"/api/v1/pairs/{pairs[0]}").json()
    assert pair["labels_count"] == 1 and pair["status"] == "complete"
    assert progress(client, world, 0)["labels"] == 3

    # Bad input names the field; another rater's label or an old id is not found; a done experiment is closed.
    bad = client.put(f"/api/v1/labels/{labels[1]['id']}", json={"choice": "up"}, headers=world.rater_headers(0))
    assert bad.status_code == 422 and bad.json()["field"] == "choice"
    other = client.put(f"/api/v1/labels/{labels[1]['id']}", json={"choice": "left"}, headers=world.rater_headers(1))
    assert other.status_code == 404 and other.json()["field"] == "label_id"
    gone = client.put(f"/api/v1/labels/{labels[0]['id']}", json={"choice": "left"}, headers=world.rater_headers(0))
    assert gone.status_code == 404
    assert client.patch(experiment, json={"status": "done"}).status_code == 200
    closed = client.put(f"/api/v1/labels/{labels[1]['id']}", json={"choice": "left"}, headers=world.rater_headers(0))
    assert closed.status_code == 409 and closed.json()["field"] == "label_id"
    assert not any(
        e["changeable"] for e in client.get(f"{experiment}/labels/mine", headers=world.rater_headers(0)).json()
    )


def test_queue_shows_who_holds_which_pair(client: TestClient, world: World) -> None:
    pair_id = lease(client, world, 1)
    queue = client.get(f"/api/v1/experiments/{world.experiment_id}/queue")
    assert queue.status_code == 200
    body = queue.json()
    assert body["pairs_pending"] == 3 and body["held_by_humans"] == 1 and body["lease_seconds"] == 60
    assert [(x["pair_id"], x["rater_id"], x["rater_name"]) for x in body["leases"]] == [
        (pair_id, world.rater_ids[1], "rater1")
    ]
    assert (
        client.get(f"/api/v1/experiments/{world.experiment_id}/queue", headers=world.rater_headers(0)).status_code
        == 403
    )
    assert client.get("/api/v1/experiments/999/queue").status_code == 404


def test_disagreements_and_dropping_a_raters_labels(client: TestClient, rng: np.random.Generator) -> None:
    world = build_world(client, rng, pairs=2, raters=3, labels_per_pair=2, name="double")
    experiment = f"/api/v1/experiments/{world.experiment_id}"
    answers = {0: {}, 1: {}}  # rater -> pair -> choice
    for rater, choices in ((0, ["left", "left"]), (1, ["right", "left"])):
        for choice in choices:
            pair_id = lease(client, world, rater)
            label(client, world, rater, pair_id, choice)
            answers[rater][pair_id] = choice
    disputed = [p for p in answers[0] if answers[0][p] != answers[1][p]]
    found = client.get(f"{experiment}/disagreements").json()
    assert [item["pair_id"] for item in found] == disputed
    assert {(a["rater_name"], a["choice"]) for a in found[0]["answers"]} == {
        ("rater0", answers[0][disputed[0]]),
        ("rater1", answers[1][disputed[0]]),
    }
    assert found[0]["teacher_choice"] == "equal"  # both segments' true rewards are all ones
    assert found[0]["left"]["clip_url"].endswith("/clip")

    dropped = client.post(f"{experiment}/raters/{world.rater_ids[1]}/labels/drop")
    assert dropped.status_code == 200 and dropped.json()["dropped"] == 2
    assert {record["pair_id"] for record in dropped.json()["labels"]} == set(answers[1])
    exported = [json.loads(line) for line in client.get(f"{experiment}/labels/export").text.splitlines()]
    assert {record["rater_id"] for record in exported} == {world.rater_ids[0]}
    for pair_id in answers[1]:
        pair = client.get(f"/api/v1/pairs/{pair_id}").json()
        assert pair["labels_count"] == 1 and pair["status"] == "pending"
    assert client.get(f"{experiment}/disagreements").json() == []
    # The pairs wait again: the third rater can label them.
    first = lease(client, world, 2)
    assert {first, lease(client, world, 2, shown=(first,))} == set(answers[1])
    missing = client.post(f"{experiment}/raters/999/labels/drop")
    assert missing.status_code == 404 and missing.json()["field"] == "rater_id"
    assert (
        client.post(f"{experiment}/raters/{world.rater_ids[0]}/labels/drop", headers=world.rater_headers(0)).status_code
        == 403
    )


def test_envs_list_what_a_new_experiment_needs(client: TestClient) -> None:
    envs = {env["env_id"]: env for env in client.get("/api/v1/envs").json()}
    assert envs["CartPole-v1"]["obs_shape"] == [4] and envs["CartPole-v1"]["num_actions"] == 2
    assert envs["Pendulum-v1"]["action_dtype"] == "float32" and envs["Pendulum-v1"]["num_actions"] is None


def test_policy_clip_is_the_latest_one_the_worker_recorded(
    client: TestClient, world: World, settings: Settings, session_factory
) -> None:
    experiment = f"/api/v1/experiments/{world.experiment_id}"
    assert client.get(f"{experiment}/policy").status_code == 204
    assert client.get(f"{experiment}/policy/clip").status_code == 404
    clip = settings.clip_dir / "policy" / f"experiment-{world.experiment_id}" / "step-1.mp4"
    clip.parent.mkdir(parents=True)
    clip.write_bytes(b"not really an mp4")
    with session_factory() as session:
        crud.add_checkpoint(
            session,
            experiment_id=world.experiment_id,
            step=512,
            path="a.pt",
            labels_used=4,
            meta={"policy_clip": str(clip.relative_to(settings.clip_dir))},
        )
        crud.add_checkpoint(session, experiment_id=world.experiment_id, step=1024, path="b.pt", labels_used=6)
    info = client.get(f"{experiment}/policy").json()
    assert info == {"step": 512, "labels_used": 4, "clip_url": f"{experiment}/policy/clip?step=512"}
    served = client.get(info["clip_url"])
    assert served.status_code == 200 and served.content == b"not really an mp4"
    assert served.headers["content-type"] == "video/mp4"
    with session_factory() as session:
        crud.add_checkpoint(
            session,
            experiment_id=world.experiment_id,
            step=2048,
            path="c.pt",
            meta={"policy_clip": "../../rlhf.sqlite"},
        )
    assert client.get(f"{experiment}/policy/clip").status_code == 404  # never outside the clip folder

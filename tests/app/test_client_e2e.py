"""End to end: a real uvicorn server on a free port, driven by the Python client over HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI
from helpers import ADMIN_TOKEN

from app.client import ApiError, RlhfClient
from app.live_server import free_port
from worker.types import Segment

pytestmark = pytest.mark.process  # uvicorn in a thread, over a real socket


@pytest.fixture
def server_url(app: FastAPI) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def _segment(rng: np.random.Generator, length: int = 6, rewards_known: bool = True) -> Segment:
    return Segment(
        obs=rng.normal(size=(length, 4)).astype(np.float32),
        actions=rng.integers(0, 2, size=length),
        true_rewards=np.ones(length, np.float32) if rewards_known else np.full(length, np.nan, np.float32),
        ended=np.zeros(length, bool),
        env_id="CartPole-v1",
    )


def test_queue_segments_lease_label_and_read_back(server_url: str, rng: np.random.Generator) -> None:
    with RlhfClient(server_url, token=ADMIN_TOKEN) as admin:
        assert admin.health()["status"] == "ok"
        experiment = admin.create_experiment("e2e", "CartPole-v1", obs_shape=[4], num_actions=2)
        segment_ids = admin.queue_segments(
            experiment["id"], [_segment(rng) for _ in range(3)] + [_segment(rng, 6, False)]
        )
        pair_ids = admin.queue_pairs(
            experiment["id"], [(segment_ids[0], segment_ids[1]), (segment_ids[2], segment_ids[3])]
        )
        stored = admin.get_segment(segment_ids[3], include_arrays=True)
        assert stored["true_rewards"] is None and len(stored["obs"]) == 6
        invite = admin.create_invite("alice", [experiment["id"]])
        with pytest.raises(ApiError) as refused:
            admin.queue_pairs(experiment["id"], [(segment_ids[0], segment_ids[0])])
        assert refused.value.status_code == 422 and refused.value.field == "pairs[0].right_segment_id"

        with RlhfClient(server_url, token=invite["token"]) as rater:
            answered = []
            while (lease := rater.lease_pair(experiment["id"])) is not None:
                label = rater.submit_label(
                    lease["pair_id"], "left", response_time_ms=1500, idempotency_key=f"k{lease['pair_id']}"
                )
                answered.append(label["pair_id"])
            assert sorted(answered) == sorted(pair_ids)
            rater.undo_last_label(experiment["id"])
            lease = rater.lease_pair(experiment["id"])
            assert lease is not None and lease["pair_id"] == answered[-1]  # the undone pair, leased back
            rater.submit_label(answered[-1], "right")

        labels = admin.export_labels(experiment["id"])
        assert [(r["pair_id"], r["choice"]) for r in labels] == [
            (answered[0], "left"),
            (answered[-1], "right"),
        ]
        assert all(r["rater_name"] == "alice" for r in labels)
        assert "label_id,experiment_id,pair_id" in admin.export_labels_csv(experiment["id"])
        admin.update_experiment(experiment["id"], teacher_mode="oracle")
        admin.record_metrics(experiment["id"], 10, {"reward/val_accuracy": 0.75})
        summary = admin.get_experiment(experiment["id"])
        assert summary["teacher_mode"] == "oracle" and summary["counts"]["labels"] == 2
        assert summary["latest_metrics"]["reward/val_accuracy"]["value"] == 0.75

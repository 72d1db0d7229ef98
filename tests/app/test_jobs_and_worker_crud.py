"""Data-layer pieces the worker uses: job claims, experiment ownership, metrics, checkpoints, label paging."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from app import crud
from app.models import Experiment, Job
from app.schemas import ExperimentCreate


def _experiment(session: Session, name: str = "jobs") -> int:
    data = ExperimentCreate(name=name, env_id="CartPole-v1", obs_shape=[4], num_actions=2)
    return crud.create_experiment(session, data=data).id


def test_concurrent_claims_never_share_a_job(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        experiment_id = _experiment(session)
        for i in range(60):
            crud.enqueue_job(session, kind="render_clip", payload={"n": i}, experiment_id=experiment_id)
    claimed: dict[str, list[int]] = {"a": [], "b": [], "c": []}

    def claim(worker: str) -> None:
        with session_factory() as session:
            while jobs := crud.claim_jobs(session, worker_id=worker, kinds=["render_clip"], limit=3):
                claimed[worker].extend(job.id for job in jobs)
                for job in jobs:
                    assert crud.complete_job(session, job_id=job.id, worker_id=worker, result={"ok": True})

    threads = [threading.Thread(target=claim, args=(worker,)) for worker in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [job_id for ids in claimed.values() for job_id in ids]
    assert sorted(everything) == list(range(1, 61))  # each job exactly once


def test_expired_claim_is_taken_over_and_failures_retry(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        job_id = crud.enqueue_job(session, kind="train", payload={}, experiment_id=_experiment(session)).id
        [job] = crud.claim_jobs(session, worker_id="w1", kinds=["train"], lease_seconds=60)
        assert crud.claim_jobs(session, worker_id="w2", kinds=["train"]) == []  # still held
        session.execute(update(Job).values(lease_expires_at=crud.utcnow() - timedelta(seconds=1)))
        session.commit()
        [again] = crud.claim_jobs(session, worker_id="w2", kinds=["train"])
        assert again.id == job_id and again.attempts == 2
        assert not crud.complete_job(session, job_id=job_id, worker_id="w1")  # w1 lost it
        assert not crud.heartbeat_job(session, job_id=job_id, worker_id="w1")
        assert crud.fail_job(session, job_id=job_id, worker_id="w2", error="boom")
        assert crud.get_job(session, job_id=job_id).status == "queued"
        [third] = crud.claim_jobs(session, worker_id="w2", kinds=["train"])
        assert crud.fail_job(session, job_id=third.id, worker_id="w2", error="boom again")
        job = crud.get_job(session, job_id=job_id)
        assert job.status == "failed" and job.error == "boom again"


def test_experiment_ownership(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        experiment_id = _experiment(session)
        assert crud.acquire_experiment(session, experiment_id=experiment_id, worker_id="w1", lease_seconds=30)
        assert crud.acquire_experiment(
            session, experiment_id=experiment_id, worker_id="w1", lease_seconds=30
        )  # heartbeat
        assert not crud.acquire_experiment(session, experiment_id=experiment_id, worker_id="w2", lease_seconds=30)
        session.execute(update(Experiment).values(owner_expires_at=crud.utcnow() - timedelta(seconds=1)))
        session.commit()
        assert crud.acquire_experiment(
            session, experiment_id=experiment_id, worker_id="w2", lease_seconds=30
        )  # w1 stopped beating
        crud.release_experiment(session, experiment_id=experiment_id, worker_id="w2")
        assert crud.acquire_experiment(session, experiment_id=experiment_id, worker_id="w3", lease_seconds=30)


def test_metrics_checkpoints_and_label_paging(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        experiment_id = _experiment(session)
        crud.record_metrics(
            session, experiment_id=experiment_id, step=100, values={"env/true_return": 20.0, "reward/val_accuracy": 0.6}
        )
        crud.record_metrics(session, experiment_id=experiment_id, step=200, values={"env/true_return": 80.0})
        assert crud.metric_series(session, experiment_id=experiment_id, keys=["env/true_return"]) == {
            "env/true_return": [(100, 20.0), (200, 80.0)]
        }
        assert crud.latest_metrics(session, experiment_id=experiment_id) == {
            "env/true_return": (200, 80.0),
            "reward/val_accuracy": (100, 0.6),
        }
        crud.add_checkpoint(session, experiment_id=experiment_id, step=100, path="/ckpt/100.pt", labels_used=10)
        crud.add_checkpoint(
            session, experiment_id=experiment_id, step=200, path="/ckpt/200.pt", labels_used=20, meta={"seed": 1}
        )
        latest = crud.latest_checkpoint(session, experiment_id=experiment_id)
        assert latest is not None and latest.path == "/ckpt/200.pt" and latest.meta == {"seed": 1}
        assert crud.labels_after(session, experiment_id=experiment_id) == []

"""Clips: the worker renders CartPole replays into web-ready MP4s; the API serves them with range requests."""

from __future__ import annotations

import io
import struct
import threading
from pathlib import Path

import av
import gymnasium as gym
import numpy as np
import pytest
from fastapi.testclient import TestClient
from helpers import CARTPOLE

from app.settings import Settings
from worker.clip_jobs import process_clip_jobs
from worker.db_store import DatabaseStore
from worker.render import _prefetch, encode_clip, iter_frames, render_clip, render_frames


def top_level_boxes(data: bytes) -> list[str]:
    """The MP4's top-level box types in file order (ftyp, moov, mdat, ...)."""
    boxes, offset = [], 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size == 1:
            size = struct.unpack(">Q", data[offset + 8 : offset + 16])[0]
        boxes.append(kind.decode("latin-1"))
        if size < 8:
            break
        offset += size
    return boxes


def test_render_frames_replays_from_seed() -> None:
    actions = [1] * 10
    first, second = render_frames("CartPole-v1", 4, actions), render_frames("CartPole-v1", 4, actions)
    assert len(first) == len(actions) + 1
    assert first[0].shape == (400, 600, 3) and first[0].dtype == np.uint8
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert not np.array_equal(first[0], first[-1])


@pytest.mark.parametrize("env_id", ["CartPole-v1", "MountainCar-v0", "Pendulum-v1", "Acrobot-v1"])
def test_frames_are_the_envs_own_pictures(env_id: str) -> None:
    """Clips draw on a faster screen (worker.render._draw_on_rgb_screen); every pixel is still env.render()'s."""
    env = gym.make(env_id, render_mode="rgb_array")
    env.action_space.seed(3)
    actions = [env.action_space.sample() for _ in range(40)]
    env.reset(seed=3)
    expected = [env.render()]
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        expected.append(env.render())
        if terminated or truncated:
            break
    frames = render_frames(env_id, 3, actions)[: len(expected)]
    assert len({frame.tobytes() for frame in frames}) > 5  # moving pictures, not one repeated
    assert all(np.array_equal(frame, own) for frame, own in zip(frames, expected, strict=True))


def test_frames_drawn_in_the_background_thread_are_the_same() -> None:
    actions = [0, 1] * 10
    background = _prefetch(iter_frames("CartPole-v1", 4, actions), depth=3)
    assert all(np.array_equal(a, b) for a, b in zip(render_frames("CartPole-v1", 4, actions), background, strict=True))


def test_a_replayed_clip_shows_every_frame_in_order(tmp_path: Path) -> None:
    """render_clip converts frames ahead in the render thread; each decoded frame is still its own time step."""
    actions = [0, 1] * 12  # the pole stays up
    info = render_clip("CartPole-v1", 2, actions, tmp_path / "clip.mp4")
    with av.open(str(tmp_path / "clip.mp4")) as container:
        decoded = [frame.to_ndarray(format="rgb24").astype(int) for frame in container.decode(video=0)]
    expected = render_frames("CartPole-v1", 2, actions)
    assert info["frame_count"] == len(decoded) == len(expected) == 25
    assert len({frame.tobytes() for frame in expected}) > 15
    for t, frame in enumerate(decoded):
        errors = [np.abs(frame - other).mean() for other in expected]
        assert errors[t] == min(errors) < 2  # (consecutive frames may be the same picture)


def test_rendered_clip_is_web_ready_and_served_with_ranges(
    client: TestClient, settings: Settings, session_factory, rng: np.random.Generator
) -> None:
    experiment_id = client.post("/api/v1/experiments", json=CARTPOLE).json()["id"]
    actions = rng.integers(0, 2, size=50).tolist()
    segment = {"obs": np.zeros((50, 4)).tolist(), "actions": actions, "render": {"seed": 5, "fps": 25}}
    ids = client.post(
        f"/api/v1/experiments/{experiment_id}/segments", json={"segments": [segment, segment]}
    ).json()["segment_ids"]

    assert process_clip_jobs(DatabaseStore(session_factory), settings.clip_dir, limit=10) == 2
    first, second = (client.get(f"/api/v1/segments/{i}").json() for i in ids)
    assert first["clip_status"] == second["clip_status"] == "ready"
    assert first["clip"]["content_hash"] == second["clip"]["content_hash"]  # same replay: made once
    assert first["clip"]["frame_count"] == 50 and (first["clip"]["width"], first["clip"]["height"]) == (
        600,
        400,
    )
    assert len(list(settings.clip_dir.rglob("*.mp4"))) == 1

    video = client.get(first["clip_url"])
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    boxes = top_level_boxes(video.content)
    assert boxes[0] == "ftyp" and boxes.index("moov") < boxes.index("mdat")  # faststart
    assert b"avc1" in video.content  # H.264
    with av.open(io.BytesIO(video.content)) as container:
        stream = container.streams.video[0]
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        assert (stream.codec_context.pix_fmt, stream.average_rate) == ("yuv420p", 25)
    assert len(decoded) == 50
    start = render_frames("CartPole-v1", 5, [])[0]
    assert np.abs(decoded[0].astype(int) - start).mean() < 2  # the replay's first frame, colours not swapped

    partial = client.get(first["clip_url"], headers={"Range": "bytes=100-1099"})
    assert partial.status_code == 206
    assert partial.content == video.content[100:1100]
    assert partial.headers["content-range"] == f"bytes 100-1099/{len(video.content)}"

    poster = client.get(first["poster_url"])
    assert poster.status_code == 200 and poster.content[:2] == b"\xff\xd8"  # JPEG
    assert process_clip_jobs(DatabaseStore(session_factory), settings.clip_dir) == 0  # nothing left


def test_uploaded_frames_become_a_clip(
    client: TestClient, settings: Settings, session_factory, tmp_path: Path
) -> None:
    experiment_id = client.post("/api/v1/experiments", json=CARTPOLE).json()["id"]
    segment = {"obs": np.zeros((8, 4)).tolist(), "actions": [0] * 8}
    segment_id = client.post(
        f"/api/v1/experiments/{experiment_id}/segments", json={"segments": [segment]}
    ).json()["segment_ids"][0]
    frames = np.zeros((8, 63, 81, 3), np.uint8)  # odd sizes are cropped to even ones
    frames[:, :, :, 0] = np.arange(8)[:, None, None] * 30
    buffer = io.BytesIO()
    np.save(buffer, frames)
    response = client.put(
        f"/api/v1/segments/{segment_id}/frames", content=buffer.getvalue(), params={"fps": 8}
    )
    assert response.status_code == 202, response.text
    assert client.get(f"/api/v1/segments/{segment_id}").json()["clip_status"] == "queued"
    assert process_clip_jobs(DatabaseStore(session_factory), settings.clip_dir) == 1
    clip = client.get(f"/api/v1/segments/{segment_id}").json()["clip"]
    assert (clip["width"], clip["height"], clip["frame_count"], clip["fps"]) == (80, 62, 8, 8)
    assert top_level_boxes(client.get(f"/api/v1/segments/{segment_id}/clip").content)[:2] == ["ftyp", "moov"]

    bad = client.put(f"/api/v1/segments/{segment_id}/frames", content=b"not npy")
    assert bad.status_code == 422 and bad.json()["field"] == "frames"
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((2, 4, 4), np.float32))
    wrong = client.put(f"/api/v1/segments/{segment_id}/frames", content=buffer.getvalue())
    assert wrong.status_code == 422 and "uint8" in wrong.json()["detail"]
    assert client.put("/api/v1/segments/999/frames", content=buffer.getvalue()).status_code == 422


def test_a_repeated_frame_is_encoded_once_per_time_step(tmp_path: Path) -> None:
    """An ended segment repeats its last frame object; each repeat is still its own frame, in time order."""
    dark, light = np.full((40, 60, 3), 30, np.uint8), np.full((40, 60, 3), 220, np.uint8)
    info = encode_clip([dark, light, light, light], tmp_path / "clip.mp4", fps=10)
    with av.open(str(tmp_path / "clip.mp4")) as container:
        frames = list(container.decode(video=0))
    assert info["frame_count"] == len(frames) == 4
    times = [frame.time for frame in frames]
    assert times == sorted(times) and times[-1] == pytest.approx(0.3)
    means = [frame.to_ndarray(format="rgb24").mean() for frame in frames]
    assert means[0] == pytest.approx(30, abs=3) and all(mean == pytest.approx(220, abs=3) for mean in means[1:])


def test_a_failed_replay_leaves_no_clip_and_no_render_thread(tmp_path: Path) -> None:
    threads_before = threading.active_count()
    with pytest.raises(AssertionError, match="invalid"):  # CartPole's step() rejects action 7
        render_clip("CartPole-v1", 0, [0, 1, 0, 7, 1], tmp_path / "clip.mp4")
    assert list(tmp_path.iterdir()) == []
    assert threading.active_count() == threads_before

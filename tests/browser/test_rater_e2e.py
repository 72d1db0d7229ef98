"""A rater in real headless Chromium against real uvicorn and real MP4 clips: sign in by invite link, watch
both clips play, label with keyboard and mouse, undo, and check the export; the admin page updates live."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from playwright.sync_api import Browser, Page

from app.db import make_engine, make_session_factory
from app.settings import Settings
from worker.clip_jobs import process_clip_jobs
from worker.db_store import DatabaseStore

from .conftest import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.process]  # Chromium and uvicorn processes

SEGMENT_LENGTH = 40
CLIP_FPS = 20
PAIRS = 20
WAIT_MS = 30_000  # generous: two shared cores run the server, ffmpeg-made clips and Chromium
KEYS = {"ArrowLeft": "left", "ArrowRight": "right", "ArrowUp": "equal", "ArrowDown": "skip"}
BUTTONS = {"left": "Left is better", "right": "Right is better", "equal": "Equally good", "skip": "Can't tell"}
BOTH_PLAYING = """() => {
  const videos = [...document.querySelectorAll('#pair-view video')];
  return videos.length === 2 && videos.every(v => v.readyState === 4 && !v.error && !v.paused && v.currentTime > 0);
}"""
# A new pair takes choices once it has been on screen a moment (static/label.js GUARD_MS).
ACCEPTING = "() => document.querySelector('#pair-view').dataset.accepting === 'true'"


def cartpole_segment(seed: int, push_right: float, rng: np.random.Generator) -> dict[str, Any]:
    """A real CartPole-v1 rollout; after the pole falls the segment is padded (reward 0, ended)."""
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=seed)
    observations, actions, rewards, ended = [], [], [], []
    done = False
    for _ in range(SEGMENT_LENGTH):
        action = int(rng.random() < push_right)
        observations.append(np.asarray(obs, dtype=np.float32).round(5).tolist())
        actions.append(action)
        if done:
            rewards.append(0.0)
            ended.append(True)
            continue
        obs, reward, terminated, truncated, _ = env.step(action)
        rewards.append(float(reward))
        ended.append(False)
        done = terminated or truncated
    env.close()
    return {
        "obs": observations,
        "actions": actions,
        "true_rewards": rewards,
        "ended": ended,
        "seed": seed,
        "render": {"seed": seed, "fps": CLIP_FPS},
    }


def render_queued_clips(server: LiveServer) -> None:
    """Do the worker's job here: encode every queued clip (real MP4/H.264 files in the server's clip folder)."""
    settings = Settings(data_dir=server.data_dir, admin_token=server.admin_token)
    engine = make_engine(settings)
    try:
        while process_clip_jobs(DatabaseStore(make_session_factory(engine)), settings.clip_dir, limit=50):
            pass
    finally:
        engine.dispose()


@dataclass(frozen=True)
class Scenario:
    experiment_id: int
    segment_ids: list[int]
    rater_id: int
    rater_name: str
    invite_url: str


def create_experiment(server: LiveServer, name: str, pairs: int, rng: np.random.Generator) -> Scenario:
    with server.admin() as admin:
        experiment = admin.post(
            "/api/v1/experiments",
            json={
                "name": name,
                "env_id": "CartPole-v1",
                "obs_shape": [4],
                "action_shape": [],
                "action_dtype": "int64",
                "num_actions": 2,
                "instructions": "Prefer the clip where the pole stays upright and the cart stays near the middle.",
            },
        )
        assert experiment.status_code == 201, experiment.text
        experiment_id = experiment.json()["id"]
        segments = [
            cartpole_segment(seed, push_right, rng)
            for seed, push_right in zip(range(2 * pairs), [0.5, 0.9] * pairs, strict=False)
        ]
        created = admin.post(f"/api/v1/experiments/{experiment_id}/segments", json={"segments": segments})
        assert created.status_code == 201, created.text
        invite = admin.post("/api/v1/invites", json={"name": f"{name}-rater", "experiment_ids": [experiment_id]})
        assert invite.status_code == 201, invite.text
    render_queued_clips(server)
    return Scenario(
        experiment_id=experiment_id,
        segment_ids=created.json()["segment_ids"],
        rater_id=invite.json()["rater_id"],
        rater_name=invite.json()["name"],
        invite_url=invite.json()["invite_url"],
    )


def queue_pairs(server: LiveServer, scenario: Scenario, count: int) -> None:
    ids = scenario.segment_ids
    body = {"pairs": [{"left_segment_id": ids[2 * i], "right_segment_id": ids[2 * i + 1]} for i in range(count)]}
    with server.admin() as admin:
        response = admin.post(f"/api/v1/experiments/{scenario.experiment_id}/pairs", json=body)
    assert response.status_code == 201, response.text


@contextmanager
def open_page(browser: Browser, width: int, height: int, errors: list[str]) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on(
        "console",
        lambda message: message.type == "error" and errors.append(f"{message.text} ({message.location.get('url')})"),
    )
    try:
        yield page
    finally:
        context.close()


def sign_in(page: Page, server: LiveServer, scenario: Scenario, screenshot: Path | None = None) -> None:
    page.goto(server.base_url + scenario.invite_url)
    if screenshot is not None:
        page.screenshot(path=str(screenshot))
    page.get_by_role("button", name="Start labeling").click()
    page.wait_for_url(f"**/label/{scenario.experiment_id}")


def current_pair_id(page: Page) -> int:
    return int(page.locator("#pair-view").get_attribute("data-pair-id") or 0)


def wait_for_new_pair_playing(page: Page, previous_pair_id: int, latencies_before: int) -> int:
    """Wait until another pair is on screen and both its clips play (the page logged the latency)."""
    page.wait_for_function(
        """([previous, count]) => {
          const view = document.querySelector('#pair-view');
          return !view.hidden && view.dataset.pairId !== String(previous)
            && window.rlhfLabeler.latencies.length > count;
        }""",
        arg=[previous_pair_id, latencies_before],
    )
    page.wait_for_function(BOTH_PLAYING)
    page.wait_for_function(ACCEPTING)
    return current_pair_id(page)


def latency_count(page: Page) -> int:
    return int(page.evaluate("window.rlhfLabeler.latencies.length"))


def test_rater_labels_with_keyboard_and_mouse_then_export(
    browser: Browser, live_server: LiveServer, output_dir: Path, page_errors: list[str], rng: np.random.Generator
) -> None:
    scenario = create_experiment(live_server, "browser-cartpole", PAIRS, rng)
    queue_pairs(live_server, scenario, PAIRS)

    with open_page(browser, 1280, 720, page_errors) as page:
        label_and_export(page, live_server, scenario, output_dir)
    with open_page(browser, 390, 844, page_errors) as phone:
        check_phone_layout(phone, live_server, scenario, output_dir)
    with open_page(browser, 1280, 720, page_errors) as admin_page:
        check_experiment_page(admin_page, live_server, scenario, output_dir)
    print(f"screenshots: {output_dir}")
    assert page_errors == []


def label_and_export(page: Page, live_server: LiveServer, scenario: Scenario, output_dir: Path) -> None:
    sign_in(page, live_server, scenario, screenshot=output_dir / "signin-1280x720.png")
    assert "pole stays upright" in page.locator(".instructions").inner_text()

    # Both clips really play: fully buffered, no media error, and their clocks advance.
    page.wait_for_function(BOTH_PLAYING)
    # Clocks advance: currentTime moves and frames keep being presented (a frame count, so a loop's wrap
    # back to 0 cannot hide or fake progress).
    start = page.evaluate(
        "[...document.querySelectorAll('#pair-view video')]"
        ".map(v => [v.currentTime, v.getVideoPlaybackQuality().totalVideoFrames])"
    )
    page.wait_for_function(
        """(start) => [...document.querySelectorAll('#pair-view video')].every((v, i) =>
             v.currentTime !== start[i][0] && v.getVideoPlaybackQuality().totalVideoFrames >= start[i][1] + 5
             && !v.error)""",
        arg=start,
    )
    page.screenshot(path=str(output_dir / "label-1280x720.png"))
    page.wait_for_function(ACCEPTING)

    expected: dict[int, str] = {}
    key_cycle = list(KEYS)
    pair_id = current_pair_id(page)
    for step in range(10):  # keyboard; undo after the fifth and answer that pair again
        key = key_cycle[step % 4]
        before = latency_count(page)
        page.keyboard.press(key)
        expected[pair_id] = KEYS[key]
        pair_id = wait_for_new_pair_playing(page, pair_id, before)
        if step == 4:
            undone_pair = next(reversed(expected))
            page.keyboard.press("u")
            page.wait_for_function(
                "(id) => document.querySelector('#pair-view').dataset.pairId === String(id)", arg=undone_pair
            )
            page.wait_for_function(BOTH_PLAYING)
            page.wait_for_function(ACCEPTING)
            assert page.locator("#session-count").inner_text() == "4"
            del expected[undone_pair]
            pair_id = undone_pair
    for choice in ["right", "left", "equal", "skip", "left"]:  # mouse
        before = latency_count(page)
        page.get_by_role("button", name=BUTTONS[choice]).click()
        expected[pair_id] = choice
        pair_id = wait_for_new_pair_playing(page, pair_id, before)

    assert page.locator("#session-count").inner_text() == "14"
    assert len(expected) == 14
    latencies = page.evaluate("window.rlhfLabeler.latencies")
    print(
        f"\nchoice → next pair playing: median {statistics.median(latencies):.1f} ms over {len(latencies)} "
        f"choices (max {max(latencies):.1f} ms; target ≤ 150 ms)"
    )

    # The page saves choices in the background: wait until every queued write has been answered.
    page.evaluate("() => window.rlhfLabeler.state.writes.then(() => true, () => true)")
    assert "error" not in (page.locator("#message").get_attribute("class") or "")
    with live_server.admin() as admin:
        export = admin.get(f"/api/v1/experiments/{scenario.experiment_id}/labels/export")
    assert export.status_code == 200
    records = [json.loads(line) for line in export.text.splitlines()]
    assert len(records) == 14
    assert {record["pair_id"]: record["choice"] for record in records} == expected
    assert {(record["rater_id"], record["rater_name"]) for record in records} == {
        (scenario.rater_id, scenario.rater_name)
    }
    assert all(record["response_time_ms"] is not None for record in records)


def check_phone_layout(phone: Page, live_server: LiveServer, scenario: Scenario, output_dir: Path) -> None:
    sign_in(phone, live_server, scenario)
    phone.wait_for_function(BOTH_PLAYING)
    boxes = [video.bounding_box() for video in phone.locator("#pair-view video").all()]
    assert boxes[0] and boxes[1] and boxes[1]["y"] >= boxes[0]["y"] + boxes[0]["height"]  # stacked
    phone.screenshot(path=str(output_dir / "label-390-wide-window.png"), full_page=True)


def check_experiment_page(admin_page: Page, live_server: LiveServer, scenario: Scenario, output_dir: Path) -> None:
    admin_page.goto(f"{live_server.base_url}/admin")
    admin_page.get_by_label("Admin token").fill(live_server.admin_token)
    admin_page.get_by_role("button", name="Sign in").click()
    admin_page.goto(f"{live_server.base_url}/admin/experiments/{scenario.experiment_id}")
    assert admin_page.locator('[data-field="labels"]').inner_text() == "14"
    assert scenario.rater_name in admin_page.locator("#rater-rows").inner_text()
    with live_server.admin() as admin:  # the worker reports progress; the page picks it up without reloading
        for step, labels, accuracy, true_return in [
            (2048, 6, 0.55, 21.0),
            (4096, 10, 0.7, 64.0),
            (6144, 14, 0.8, 120.0),
        ]:
            response = admin.post(
                f"/api/v1/experiments/{scenario.experiment_id}/metrics",
                json={
                    "step": step,
                    "values": {
                        "labels/count": labels,
                        "reward/val_accuracy": accuracy,
                        "env/true_return": true_return,
                    },
                },
            )
            assert response.status_code == 204, response.text
    admin_page.wait_for_function(
        "() => document.querySelectorAll('#plot-return .chart-dot').length === 3"
        " && document.querySelectorAll('#plot-accuracy .chart-dot').length === 3"
    )
    admin_page.screenshot(path=str(output_dir / "experiment-1280x720.png"), full_page=True)


def test_empty_queue_waits_then_resumes(
    browser: Browser, live_server: LiveServer, output_dir: Path, page_errors: list[str], rng: np.random.Generator
) -> None:
    scenario = create_experiment(live_server, "browser-waiting", 1, rng)
    with open_page(browser, 1280, 720, page_errors) as page:
        sign_in(page, live_server, scenario)
        page.locator("#waiting-view").wait_for(state="visible")
        assert "All caught up" in page.locator("#waiting-view").inner_text()
        page.screenshot(path=str(output_dir / "waiting-1280x720.png"))
        queue_pairs(live_server, scenario, 1)
        page.wait_for_function(BOTH_PLAYING)  # the page polled and found the new pair by itself
        assert page.locator("#waiting-view").is_hidden()
    assert page_errors == []

"""The labeling page, second version, in real Chromium against real uvicorn and real clips: the counts survive
a reload, the waiting page says when others hold the pairs, a choice moves focus and a new pair takes no key
for a moment, the phone layout fits 390×844 with words that match it, sign-out, undo and the rater's history."""

from __future__ import annotations

import json
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, Page

from .conftest import LiveServer
from .test_rater_e2e import (
    ACCEPTING,
    BOTH_PLAYING,
    BUTTONS,
    WAIT_MS,
    Scenario,
    create_experiment,
    current_pair_id,
    latency_count,
    open_page,
    queue_pairs,
    sign_in,
    wait_for_new_pair_playing,
)

pytestmark = [pytest.mark.browser, pytest.mark.process]

FOUR_CHOICES = ("left", "equal", "skip", "right")


def exported(server: LiveServer, scenario: Scenario) -> list[dict]:
    with server.admin() as admin:
        response = admin.get(f"/api/v1/experiments/{scenario.experiment_id}/labels/export")
    assert response.status_code == 200
    return [json.loads(line) for line in response.text.splitlines()]


def settle(page: Page) -> None:
    """Wait until every label the page queued has been answered by the server."""
    page.evaluate("() => window.rlhfLabeler.state.writes.then(() => true, () => true)")


def token_of(scenario: Scenario) -> str:
    return urlparse(scenario.invite_url).path.rsplit("/", 1)[-1]


def test_reload_keeps_the_count_focus_guard_history_and_sign_out(
    browser: Browser, live_server: LiveServer, output_dir, page_errors: list[str], rng: np.random.Generator
) -> None:
    scenario = create_experiment(live_server, "v2-reload", 8, rng)
    queue_pairs(live_server, scenario, 8)
    with open_page(browser, 1280, 720, page_errors) as page:
        sign_in(page, live_server, scenario)
        page.wait_for_function(BOTH_PLAYING)
        # Nothing to undo yet; the pause button shows its key.
        assert page.locator("#undo").is_disabled()
        assert page.locator("#play-pause").inner_text().replace("\n", " ").strip() == "Pause P"
        assert page.locator("#pair-view kbd").first.is_visible()  # a desktop has a keyboard
        page.wait_for_function(ACCEPTING)

        # A click moves focus off the button: Enter does not label the next pair, now or 0.6 s later.
        pair_id = current_pair_id(page)
        before = latency_count(page)
        page.get_by_role("button", name=BUTTONS["right"]).click()
        pair_id = wait_for_new_pair_playing(page, pair_id, before)
        assert not page.evaluate("() => document.activeElement.matches('button.choice')")
        page.keyboard.press("Enter")
        page.wait_for_timeout(600)
        page.keyboard.press("Enter")
        page.wait_for_timeout(300)
        settle(page)
        assert current_pair_id(page) == pair_id
        assert len(exported(live_server, scenario)) == 1
        assert not page.locator("#undo").is_disabled()

        # A key pressed right after a choice cannot label the pair that replaces it.
        before = latency_count(page)
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("ArrowLeft")  # meant for the same pair, lands on the next one: ignored
        pair_id = wait_for_new_pair_playing(page, pair_id, before)
        page.wait_for_timeout(200)
        settle(page)
        assert current_pair_id(page) == pair_id and len(exported(live_server, scenario)) == 2
        before = latency_count(page)
        page.keyboard.press("ArrowUp")
        wait_for_new_pair_playing(page, pair_id, before)
        settle(page)
        assert page.locator("#session-count").inner_text() == "3"

        # A reload keeps the count (it comes from the server) and undo stays possible.
        page.reload()
        page.wait_for_function(BOTH_PLAYING)
        assert page.locator("#session-count").inner_text() == "3"
        assert not page.locator("#undo").is_disabled()

        # History: both clips' thumbnails and the choice; change the oldest answer.
        page.locator("#history summary").click()
        items = page.locator("#history-list .history-item")
        items.nth(2).wait_for()
        assert items.count() == 3
        page.wait_for_function(
            "() => [...document.querySelectorAll('#history-list img')].every(i => i.complete && i.naturalWidth > 0)"
        )
        assert page.locator("#history-list img").count() == 6
        oldest = items.nth(2)
        assert oldest.get_attribute("data-choice") == "right"
        oldest_pair = int(oldest.get_attribute("data-pair-id") or 0)
        page.screenshot(path=str(output_dir / "label-history-1280x720.png"), full_page=True)
        oldest.get_by_role("button", name="Equally good").click()
        page.wait_for_function(
            "(id) => document.querySelector(`#history-list .history-item[data-pair-id='${id}']`)"
            "?.dataset.choice === 'equal'",
            arg=oldest_pair,
        )
        records = exported(live_server, scenario)
        assert len(records) == 3
        assert {r["pair_id"]: r["choice"] for r in records}[oldest_pair] == "equal"
        assert page.locator("#session-count").inner_text() == "3"

        # Sign out: the cookie is gone, the labeling page asks for the invite link again.
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(f"{live_server.base_url}/signed-out")
        assert "You are signed out" in page.locator("main").inner_text()
        after = page.context.request.get(f"{live_server.base_url}/label/{scenario.experiment_id}")
        assert after.status == 401 and "Open your invite link" in after.text()
    assert page_errors == []


def test_phone_fits_both_clips_and_four_choices_and_says_top_and_bottom(
    browser: Browser, live_server: LiveServer, output_dir, page_errors: list[str], rng: np.random.Generator
) -> None:
    scenario = create_experiment(live_server, "v2-phone", 3, rng)
    queue_pairs(live_server, scenario, 3)
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    phone = context.new_page()
    phone.set_default_timeout(WAIT_MS)
    phone.on("pageerror", lambda error: page_errors.append(str(error)))
    try:
        sign_in(phone, live_server, scenario)
        phone.wait_for_function(BOTH_PLAYING)
        phone.screenshot(path=str(output_dir / "label-390x844.png"))
        boxes = [video.bounding_box() for video in phone.locator("#pair-view video").all()]
        assert all(box is not None for box in boxes)
        assert boxes[1]["y"] >= boxes[0]["y"] + boxes[0]["height"]  # type: ignore[index]  # stacked
        for choice in FOUR_CHOICES:
            box = phone.locator(f'button.choice[data-choice="{choice}"]').bounding_box()
            assert box is not None and box["y"] + box["height"] <= 844, (choice, box)
        assert boxes[1]["y"] + boxes[1]["height"] <= 844  # type: ignore[index]
        assert phone.evaluate("() => document.scrollingElement.scrollTop") == 0
        # The words follow the layout; no keyboard hints on a touch screen.
        assert phone.get_by_role("button", name="Top is better").is_visible()
        assert phone.get_by_role("button", name="Bottom is better").is_visible()
        assert not phone.locator("button.choice .wide-only").first.is_visible()
        assert phone.locator("figcaption").first.inner_text() == "Top"
        assert phone.locator("kbd:visible").count() == 0
        assert phone.locator(".shortcuts").is_hidden()
        phone.wait_for_function(ACCEPTING)
        phone.get_by_role("button", name="Top is better").tap()
        phone.wait_for_function("() => window.rlhfLabeler.latencies.length === 1")
        settle(phone)
        assert [r["choice"] for r in exported(live_server, scenario)] == ["left"]
    finally:
        context.close()
    assert page_errors == []


def test_waiting_page_says_others_hold_the_pairs(
    browser: Browser, live_server: LiveServer, output_dir, page_errors: list[str], rng: np.random.Generator
) -> None:
    scenario = create_experiment(live_server, "v2-held", 3, rng)
    queue_pairs(live_server, scenario, 3)
    holder = httpx.Client(
        base_url=live_server.base_url, headers={"Authorization": f"Bearer {token_of(scenario)}"}, timeout=30.0
    )
    with live_server.admin() as admin:
        invite = {"name": "v2-held-second", "experiment_ids": [scenario.experiment_id]}
        second = admin.post("/api/v1/invites", json=invite)
    assert second.status_code == 201
    with holder:
        held: list[httpx.Response] = []
        for _ in range(3):  # a lease hands back a held pair first, unless it is named as shown already
            shown = {"exclude": [response.json()["pair_id"] for response in held]}
            held.append(holder.post(f"/api/v1/experiments/{scenario.experiment_id}/leases", params=shown))
        assert [response.status_code for response in held] == [200, 200, 200]
        other = Scenario(scenario.experiment_id, scenario.segment_ids, second.json()["rater_id"], "v2-held-second",
                         second.json()["invite_url"])  # fmt: skip
        with open_page(browser, 1280, 720, page_errors) as page:
            sign_in(page, live_server, other)
            page.locator("#waiting-view").wait_for(state="visible")
            page.wait_for_function(
                "() => document.querySelector('#waiting-text').textContent.includes('3 pairs are being labeled')"
            )
            assert page.locator("#waiting-heading").inner_text() == "Others are labeling the rest"
            assert page.locator("#waiting-count").inner_text() == "3"
            assert "you'll get the next one" in page.locator("#waiting-text").inner_text()
            page.screenshot(path=str(output_dir / "waiting-held-1280x720.png"))
            # The holder gives one back: this rater gets it without reloading.
            release = holder.delete(f"/api/v1/leases/{held[0].json()['lease_id']}")
            assert release.status_code == 204
            page.wait_for_function(BOTH_PLAYING)
            assert current_pair_id(page) == held[0].json()["pair_id"]
    assert page_errors == []


def test_a_reload_gets_the_same_pair_back_and_leaving_releases_every_held_pair(
    browser: Browser, live_server: LiveServer, page_errors: list[str], rng: np.random.Generator
) -> None:
    scenario = create_experiment(live_server, "v2-leave", 5, rng)
    queue_pairs(live_server, scenario, 5)

    def held() -> list[int]:
        with live_server.admin() as admin:
            queue = admin.get(f"/api/v1/experiments/{scenario.experiment_id}/queue").json()
        return sorted(lease["pair_id"] for lease in queue["leases"])

    with open_page(browser, 1280, 720, page_errors) as page:
        sign_in(page, live_server, scenario)
        page.wait_for_function(BOTH_PLAYING)
        page.wait_for_function("() => window.rlhfLabeler.state.upcoming.length === 2")
        shown = current_pair_id(page)
        holding = held()
        assert len(holding) == 3 and shown in holding  # the pair on screen and the two prefetched

        page.reload()
        page.wait_for_function(BOTH_PLAYING)
        page.wait_for_function("() => window.rlhfLabeler.state.upcoming.length === 2")
        assert current_pair_id(page) == shown  # the pair this rater held comes back first
        assert held() == holding  # released on the way out, leased again: the same three, no more

        page.goto("about:blank")
        for _ in range(50):  # the beacons are sent as the page goes; give the server a moment
            if not held():
                break
            page.wait_for_timeout(100)
        assert held() == []
    assert page_errors == []


def test_the_admin_releases_a_stuck_lease_and_revokes_an_invite_from_the_experiment_page(
    browser: Browser, live_server: LiveServer, page_errors: list[str], rng: np.random.Generator
) -> None:
    scenario = create_experiment(live_server, "v2-admin-queue", 2, rng)
    queue_pairs(live_server, scenario, 2)
    rater = httpx.Client(
        base_url=live_server.base_url, headers={"Authorization": f"Bearer {token_of(scenario)}"}, timeout=30.0
    )
    with rater:
        assert rater.post(f"/api/v1/experiments/{scenario.experiment_id}/leases").status_code == 200
        with open_page(browser, 1280, 900, page_errors) as page:
            page.on("dialog", lambda dialog: dialog.accept())
            page.goto(f"{live_server.base_url}/admin")
            page.get_by_label("Admin token").fill(live_server.admin_token)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url("**/admin/experiments")
            page.goto(f"{live_server.base_url}/admin/experiments/{scenario.experiment_id}")
            release = page.locator("#queue-rows button.release-lease")
            release.wait_for()
            release.click()
            page.locator("#queue-rows", has_text="Nobody holds a pair.").wait_for()
            # Released: the rater is handed a pair again (the same one, the queue's first).
            assert rater.post(f"/api/v1/experiments/{scenario.experiment_id}/leases").status_code == 200

            page.locator(f"#rater-rows tr[data-rater-id='{scenario.rater_id}'] button.revoke-rater").click()
            page.locator("#drop-message", has_text="Revoked").wait_for()
            page.locator("#queue-rows", has_text="Nobody holds a pair.").wait_for()
            assert rater.post(f"/api/v1/experiments/{scenario.experiment_id}/leases").status_code in (401, 403)
    assert page_errors == []

"""The researcher in real Chromium, with a real worker training on real labels from two raters' pages: create
an experiment with the form, invite raters with copyable links, watch the queue, switch to the synthetic teacher,
see the curves move and the policy's clip, review where raters disagree and drop a rater's labels, pause and
resume, and download the labels; every action goes through the /api/v1 routes a script would use."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page

from .conftest import REPO_ROOT, LiveServer
from .test_rater_e2e import ACCEPTING, WAIT_MS, open_page

pytestmark = [pytest.mark.browser, pytest.mark.process]

LABEL_BUDGET = 10  # pairs asked; two labels each
TIMESTEPS = 8192  # sixteen CartPole rollouts of 16 envs x 32 steps
RUN_TIMEOUT_S = 420.0  # two shared cores train, render clips, serve and run three Chromium pages


@contextmanager
def worker_process(server: LiveServer, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`rlhf worker` on the server's data folder (the same SQLite file and clip folder)."""
    env = {**os.environ, "RLHF_DATA_DIR": str(server.data_dir), "RLHF_ADMIN_TOKEN": server.admin_token}
    env.pop("RLHF_DATABASE_URL", None)
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "worker", "--lease-seconds", "5", "--poll-seconds", "0.2"],
            env=env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def until(condition: Callable[[], bool], timeout_s: float, what: str, tick: Callable[[], None], log: Path) -> None:
    """Call `tick` (raters answering) until `condition` holds; fail with the worker's log after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not within {timeout_s:.0f} s; worker log:\n{log.read_text()[-4000:]}")
        tick()


class Rater:
    """A rater's page that answers every pair the same way as soon as the pair takes choices."""

    def __init__(self, page: Page, key: str) -> None:
        self.page = page
        self.key = key
        self.answered = 0

    def answer(self) -> None:
        if self.page.evaluate(ACCEPTING):
            self.page.keyboard.press(self.key)
            self.answered += 1


def leave(rater: Rater, link: str, name: str, api: httpx.Client, path: str, server: LiveServer) -> None:
    """Close the rater's page and make sure the pairs it held are given back now, rather than after the lease
    (300 s here): the page's pagehide beacon may have done it already, else DELETE /leases/{id} with the rater's
    token does, as a script would."""
    rater.page.context.close()
    token = link.rsplit("/", 1)[-1]
    for lease in api.get(f"{path}/queue").json()["leases"]:
        if lease["rater_name"] == name:
            released = httpx.delete(
                f"{server.base_url}/api/v1/leases/{lease['lease_id']}", headers={"Authorization": f"Bearer {token}"}
            )
            assert released.status_code in (204, 404)  # 404: the beacon came first
    assert name not in {lease["rater_name"] for lease in api.get(f"{path}/queue").json()["leases"]}


def sign_in_admin(page: Page, server: LiveServer) -> None:
    page.goto(f"{server.base_url}/admin")
    page.get_by_label("Admin token").fill(server.admin_token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/admin/experiments")


def fill_new_experiment(page: Page, output_dir: Path, server: LiveServer, errors: list[str]) -> int:
    """The form, with two refused tries first (bad segment length, a name in use); returns the experiment id."""
    with server.admin() as admin:
        taken = {"name": "v2-taken", "env_id": "CartPole-v1", "obs_shape": [4], "num_actions": 2}
        assert admin.post("/api/v1/experiments", json=taken).status_code == 201
    page.get_by_role("link", name="New experiment").click()
    page.wait_for_url("**/admin/experiments/new")
    assert page.locator("#env_id option").all_inner_texts()[:2] == ["CartPole-v1", "Acrobot-v1"]
    assert page.locator("#segment_length").input_value() == "50"  # the env's default
    page.get_by_label("Name").fill("v2-taken")
    page.get_by_label("Who labels").select_option("human")
    page.get_by_label("Label budget").fill(str(LABEL_BUDGET))
    page.get_by_label("Labels per pair").fill("2")
    page.get_by_label("Training length (env steps)").fill(str(TIMESTEPS))
    page.get_by_label("Instructions for raters").fill("Prefer the clip where the pole stays upright.")
    page.get_by_label("Segment length (steps)").fill("0")
    page.get_by_role("button", name="Create experiment").click()
    assert "segment_length" in page.locator("#form-message").inner_text()
    assert page.locator("#segment_length").get_attribute("aria-invalid") == "true"
    page.get_by_label("Segment length (steps)").fill("20")
    page.screenshot(path=str(output_dir / "new-experiment-1280x720.png"), full_page=True)
    page.get_by_role("button", name="Create experiment").click()
    page.wait_for_function("() => document.querySelector('#form-message').textContent.startsWith('name:')")
    assert page.locator("#name").get_attribute("aria-invalid") == "true"
    refused = [e for e in errors if "409 (Conflict)" in e and e.endswith("/api/v1/experiments)")]
    assert len(refused) == 1  # the browser logs the refusal it was meant to get; nothing else
    errors.remove(refused[0])
    page.get_by_label("Name").fill("v2-researcher")
    page.get_by_role("button", name="Create experiment").click()
    page.wait_for_url(re.compile(r".*/admin/experiments/\d+$"))
    return int(page.url.rsplit("/", 1)[-1])


def invite(page: Page, name: str) -> str:
    page.get_by_label("Name").fill(name)
    page.get_by_role("button", name="Create invite link").click()
    page.wait_for_function("(name) => document.querySelector('#invite-for').textContent === name", arg=name)
    page.get_by_role("button", name="Copy").click()
    page.wait_for_function("() => document.querySelector('#invite-message').textContent === 'Copied.'")
    return page.locator("#invite-link").input_value()


def rater_page(browser: Browser, link: str, errors: list[str]) -> Page:
    context = browser.new_context(viewport={"width": 1000, "height": 700})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(link)
    page.get_by_role("button", name="Start labeling").click()
    page.wait_for_url("**/label/*")
    return page


def test_researcher_runs_an_experiment_from_the_browser(
    browser: Browser, live_server: LiveServer, output_dir: Path, page_errors: list[str], tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    with (
        live_server.admin() as api,
        open_page(browser, 1280, 900, page_errors) as admin,
        worker_process(live_server, log),
    ):
        admin.context.grant_permissions(["clipboard-read", "clipboard-write"])
        sign_in_admin(admin, live_server)
        experiment_id = fill_new_experiment(admin, output_dir, live_server, page_errors)
        path = f"/api/v1/experiments/{experiment_id}"
        created = api.get(path).json()
        assert (created["label_budget"], created["labels_per_pair"], created["timestep_budget"]) == (
            LABEL_BUDGET,
            2,
            TIMESTEPS,
        )
        assert created["config"]["run"]["segment_length"] == 20 and created["teacher_mode"] == "human"

        links = [invite(admin, "alice"), invite(admin, "bob")]
        assert all(link.startswith(live_server.base_url + "/invite/") for link in links)
        assert admin.evaluate("() => navigator.clipboard.readText()") == links[1]
        alice = Rater(rater_page(browser, links[0], page_errors), "ArrowLeft")
        bob = Rater(rater_page(browser, links[1], page_errors), "ArrowRight")

        def both() -> None:
            alice.answer()
            bob.answer()
            admin.wait_for_timeout(150)

        # The queue shows who holds which pair; a switch to Oracle says what happens to them.
        def holders() -> set[str]:
            return set(admin.locator("#queue-rows tr[data-lease-id] td:nth-child(2)").all_inner_texts())

        # Each page holds up to three pairs: both names show once both pages have leased.
        until(lambda: {"alice", "bob"} <= holders(), RUN_TIMEOUT_S,
              "both raters' leases in the queue", lambda: admin.wait_for_timeout(300), log)  # fmt: skip
        admin.get_by_role("button", name="Oracle").click()
        admin.wait_for_function(
            "() => /pairs? held by (a rater|raters) will be answered by the synthetic teacher if not labeled within"
            " \\d+ s/.test(document.querySelector('#mode-held').textContent)"
        )
        admin.get_by_role("button", name="Human").click()
        admin.wait_for_function("() => document.querySelector('#mode-held').textContent === ''")

        # The curves move while people label, and the worker's clip of the policy appears beside them.
        def curves_moved() -> bool:
            return bool(admin.evaluate(
                "() => document.querySelectorAll('#plot-accuracy .chart-dot').length >= 2"
                " && document.querySelectorAll('#plot-return .chart-dot').length >= 3"
                " && document.querySelector('#policy-video').readyState >= 2"
            ))  # fmt: skip

        until(curves_moved, RUN_TIMEOUT_S, "points after fits and a policy clip", both, log)
        assert admin.locator("#plot-return .x-label").text_content() == "env steps"
        assert admin.locator("#plot-accuracy .x-label").text_content() == "labels trained on"
        ticks = admin.locator("#plot-return .tick-x").all_text_contents()
        values = [float(t[:-1]) * 1000 if t.endswith("k") else float(t) for t in ticks]
        steps = {round(b - a, 6) for a, b in zip(values, values[1:], strict=False)}
        assert values[0] == 0 and len(steps) == 1, ticks  # "nice ticks": evenly spaced from 0 ...
        step = steps.pop()
        assert step / 10 ** math.floor(math.log10(step)) in (1, 2, 5), ticks  # ... by 1, 2 or 5 times 10^k
        assert admin.evaluate("() => document.querySelector('#policy-video').duration") > 0.2
        assert "env steps" in admin.locator("#policy-caption").inner_text()
        admin.screenshot(path=str(output_dir / "experiment-live-1280x900.png"), full_page=True)

        # Alice says left, Bob says right: the disagreements show both clips and each answer.
        until(lambda: admin.locator("#disagreement-list li.disagreement").count() >= 1, RUN_TIMEOUT_S,
              "a disagreement", both, log)  # fmt: skip
        first = admin.locator("#disagreement-list li.disagreement").first
        assert "alice: left is better" in first.inner_text() and "bob: right is better" in first.inner_text()
        admin.wait_for_function(
            "() => [...document.querySelectorAll('#disagreement-list li.disagreement')[0].querySelectorAll('video')]"
            ".every(v => v.readyState >= 2 && !v.error)"
        )
        rows = admin.locator("#rater-rows")
        assert "alice" in rows.inner_text() and "bob" in rows.inner_text()

        # Bob is careless. His page closes; the pairs it held go back now (as a script would: DELETE /leases/{id}
        # with his token). The run now waits for second labels only the synthetic teacher can give.
        leave(bob, links[1], "bob", api, path, live_server)
        assert api.get(path).json()["status"] == "running"

        # Pause: the worker checkpoints and lets go; resume: a worker takes it up again.
        admin.get_by_role("button", name="Pause").click()
        admin.wait_for_function("() => document.querySelector('[data-field=\"status\"]').textContent === 'paused'")

        def alone() -> None:
            alice.answer()
            admin.wait_for_timeout(200)

        def let_go() -> bool:
            owner = api.get(f"{path}/live").json()["experiment"]["owner_worker"]
            return owner is None and admin.locator('[data-field="worker"]').inner_text() == "none"

        until(let_go, 60, "the worker letting go", alone, log)
        assert api.get(path).json()["status"] == "paused"
        steps_paused = api.get(path).json()["latest_metrics"]["env/timesteps"]["value"]
        admin.get_by_role("button", name="Resume").click()
        until(lambda: admin.locator('[data-field="worker"]').inner_text() not in ("none", ""), 60,
              "a worker resuming", alone, log)  # fmt: skip

        # Drop Bob's labels: they leave the data, and the worker stops training on them.
        admin.once("dialog", lambda dialog: dialog.accept())
        admin.locator("#rater-rows tr", has_text="bob").get_by_role("button", name="Drop labels").click()
        admin.wait_for_function(
            "() => /^Dropped \\d+ labels of bob\\.$/.test(document.querySelector('#drop-message').textContent)"
        )
        labels = [json.loads(line) for line in api.get(f"{path}/labels/export").text.splitlines()]
        assert labels and "bob" not in {label["rater_name"] for label in labels}
        # No disagreement names bob any more (others may still disagree with each other, or with the teacher).
        admin.wait_for_function(
            "() => [...document.querySelectorAll('#disagreement-list li.disagreement')]"
            ".every(item => !item.textContent.includes('bob:'))"
        )
        # The synthetic teacher answers with Alice what is left; the run ends, and it trained on exactly the
        # labels stored.
        admin.get_by_role("button", name="Oracle").click()
        until(lambda: api.get(path).json()["status"] == "done", RUN_TIMEOUT_S, "the run to finish", alone, log)
        final = api.get(path).json()
        stored = [json.loads(line) for line in api.get(f"{path}/labels/export").text.splitlines()]
        assert "bob" not in {label["rater_name"] for label in stored}
        assert final["latest_metrics"]["labels/count"]["value"] == len(stored)
        assert final["latest_metrics"]["env/timesteps"]["value"] >= max(TIMESTEPS, steps_paused)

        # Downloads: the same export a script gets.
        with admin.expect_download() as jsonl:
            admin.get_by_role("link", name="Labels (JSONL)").click()
        assert [json.loads(line) for line in Path(jsonl.value.path()).read_text().splitlines()] == stored
        with admin.expect_download() as csv_file:
            admin.get_by_role("link", name="Labels (CSV)").click()
        rows_csv = list(csv.DictReader(io.StringIO(Path(csv_file.value.path()).read_text())))
        assert [int(row["label_id"]) for row in rows_csv] == [label["label_id"] for label in stored]
        alice.page.context.close()
    assert page_errors == []

"""A user's own env named in the browser's form: the worker cannot import it, so the experiment fails and its
page says why, in the worker's words, while the worker itself keeps going."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from .conftest import LiveServer
from .test_rater_e2e import open_page
from .test_researcher_e2e import sign_in_admin, worker_process

pytestmark = [pytest.mark.browser, pytest.mark.process]


def test_an_env_the_worker_cannot_import_fails_its_experiment_on_its_page(
    live_server: LiveServer, browser: Browser, output_dir: Path, page_errors: list[str], tmp_path: Path
) -> None:
    with open_page(browser, 1280, 800, page_errors) as page:
        sign_in_admin(page, live_server)
        page.get_by_role("link", name="New experiment").click()
        page.wait_for_url("**/admin/experiments/new")
        page.get_by_label("Name").fill("my-own-env")
        page.get_by_label("Environment").select_option(label="Your own env (module:ClassName)…")
        page.get_by_label("Your env").fill("no_such_module:Herding")
        page.get_by_label("Observation size").fill("6")
        page.get_by_label("Actions").select_option("continuous")
        page.get_by_label("N / action size").fill("2")
        page.get_by_label("Who labels").select_option("oracle")
        page.get_by_label("Label budget").fill("10")
        page.screenshot(path=str(output_dir / "new-experiment-own-env.png"), full_page=True)
        page.get_by_role("button", name="Create experiment").click()
        page.wait_for_url(re.compile(r".*/admin/experiments/\d+$"))
        experiment_id = int(page.url.rsplit("/", 1)[-1])
        assert page.locator("#failure").is_hidden()

        with live_server.admin() as admin:
            created = admin.get(f"/api/v1/experiments/{experiment_id}").json()
        assert (created["env_id"], created["obs_shape"], created["action_shape"]) == (
            "no_such_module:Herding", [6], [2]
        )
        log = tmp_path / "worker.log"
        with worker_process(live_server, log) as worker:
            failure = page.locator("#failure")
            failure.wait_for(state="visible", timeout=60_000)  # the page polls; the worker fails it
            assert worker.poll() is None, log.read_text()  # the worker goes on serving
        text = failure.inner_text()
        assert "could not run this experiment" in text
        assert "cannot import env module 'no_such_module'" in text and "ModuleNotFoundError" in text
        assert page.locator('[data-field="status"]').inner_text() == "failed"
        assert page.locator("#pause-resume").inner_text() == "Retry"
        page.screenshot(path=str(output_dir / "experiment-failed-own-env.png"), full_page=True)

        page.locator("#pause-resume").click()  # set back to "created": a worker would try it again
        failure.wait_for(state="hidden")
        with live_server.admin() as admin:
            retried = admin.get(f"/api/v1/experiments/{experiment_id}").json()
        assert (retried["status"], retried["error"]) == ("created", None)
    assert page_errors == []

"""The web view of `deploy serve`, as a person sees it: Debian's chromium, headless, driven by
Selenium (scripts/test-browser), on the agent's real page."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Workspace, ok
from tests.integration.serving import agent, waited
from tests.integration.test_serve import SECRET, app_files, spec

pytestmark = pytest.mark.integration

# Where a test run may leave the screenshot docs/serve.md shows (DEPLOYER_SCREENSHOT=docs/...).
SCREENSHOT = os.environ.get("DEPLOYER_SCREENSHOT")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        message = "no chromium or chromedriver (run scripts/test-browser)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,800"):
        options.add_argument(argument)
    session = webdriver.Chrome(service=Service(driver), options=options)
    try:
        yield session
    finally:
        session.quit()


def test_the_page_shows_sync_and_health_apart_and_the_history(
    workspace: Workspace, browser: Any, tmp_path: Path
) -> None:
    """`sick` runs what it declares but is unhealthy; `behind` is healthy but declares another
    tag: the page shows each state on its own, and `sick`'s history its failed release."""
    from selenium.webdriver.common.by import By

    behind = f"{workspace.project}-b"
    workspace.other_projects.append(behind)
    app_files(workspace)
    workspace.write(
        "app/sick.yml", "services:\n  web:\n    image: ${REGISTRY}/testapp-unhealthy:1.0.0\n"
    )
    sick = spec(workspace.project, "{apply: off}")
    sick = sick.replace("[app/compose.yml]", "[app/compose.yml, app/sick.yml]")
    workspace.write(
        "sick.yml", sick.replace("wait_timeout: 30", "wait_timeout: 5, on_failure: stop")
    )
    workspace.write("behind.yml", spec(behind, "{apply: notify}"))
    assert workspace.deploy("sick", "--yes").returncode == 1  # never healthy: left as it is
    ok(workspace.deploy("behind", "--yes"))
    workspace.append("behind.yml", "services: {web: {tag: 1.1.0}}\n")

    with agent(workspace.root, [], workspace.env) as a:
        waited(lambda: a.rounds("sick") and a.rounds("behind"), 30, "a round of each")
        browser.get(a.url + "/")

        def states(name: str) -> tuple[str, str]:
            row = browser.find_element(By.CSS_SELECTOR, f'tr[data-environment="{name}"]')
            sync = row.find_element(By.CSS_SELECTOR, ".sync").text
            return sync, row.find_element(By.CSS_SELECTOR, ".health").text

        assert states("sick") == ("in-sync", "unhealthy")
        assert states("behind") == ("out-of-sync", "healthy")
        colours = {
            name: browser.find_element(
                By.CSS_SELECTOR, f'tr[data-environment="{name}"] .sync'
            ).value_of_css_property("background-color")
            for name in ("sick", "behind")
        }
        assert colours["sick"] != colours["behind"]  # the two states look apart, not only read
        if SCREENSHOT:
            browser.save_screenshot(SCREENSHOT)
        assert SECRET not in browser.page_source

        row = browser.find_element(By.CSS_SELECTOR, 'tr[data-environment="sick"]')
        row.find_element(By.LINK_TEXT, "history").click()
        waited(lambda: "/environments/sick" in browser.current_url, 10, "sick's page")
        history = browser.find_element(By.ID, "history")
        assert history.is_displayed()
        [release] = browser.find_elements(By.CSS_SELECTOR, "tr.release")
        cells = [c.text for c in release.find_elements(By.TAG_NAME, "td")]
        assert (cells[0], cells[3], cells[4]) == ("#1", "deploy sick", "failed")
        plan = browser.find_element(By.CSS_SELECTOR, "#plan + pre").text
        assert "in sync" in plan
        assert SECRET not in browser.page_source

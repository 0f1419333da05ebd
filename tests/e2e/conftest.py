"""Browser tests: Playwright driving Debian's Chromium against a real Stagecast server.

Without ``/usr/bin/chromium`` these tests are skipped with the reason shown, unless
``STAGECAST_TEST_REQUIRE_BROWSER=1`` (CI) makes that a failure. They run on SQLite only:
the pages are the subject here, and the API tests cover both database back ends.
Screenshots of every page land in ``build/screenshots/``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from stagecast.auth import service as accounts
from stagecast.config import Settings
from tests.conftest import RunningServer, make_settings, start_server, stop_server

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # Let the muted preview and players start without a user gesture.
    "--autoplay-policy=no-user-gesture-required",
]
PASSWORD = "correct horse battery"


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    reason = f"Chromium not found at {CHROMIUM} (apt-get install chromium) - browser tests skipped"
    if os.environ.get("STAGECAST_TEST_REQUIRE_BROWSER") == "1":
        pytest.fail(reason.replace("skipped", "required (STAGECAST_TEST_REQUIRE_BROWSER=1)"))
    pytest.skip(reason)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """SQLite settings with short timings, so a whole show fits in a test."""
    return make_settings(
        tmp_path / "data",
        reconnect_grace_seconds=4.0,
        vod_poll_seconds=0.5,
        metrics_history_seconds=3.0,
    )


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[RunningServer]:
    """Stagecast on a real socket (HTTP and RTMP on free ports)."""
    running, task = await start_server(settings)
    yield running
    await stop_server(running, task)


@pytest.fixture
async def browser(server: RunningServer) -> AsyncIterator[Browser]:
    """Headless Chromium (the test is skipped, or fails in CI, when it is not installed).

    It depends on ``server`` so that it closes first: the server then stops without open
    event streams or sockets, whether the test passed or not.
    """
    _require_chromium()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


class PageErrors:
    """Uncaught script errors of the pages of a context (a page must have none)."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def watch(self, page: Page) -> None:
        page.on("pageerror", lambda error: self.errors.append(f"{page.url}: {error}"))


async def new_context(
    browser: Browser, server: RunningServer, errors: PageErrors
) -> BrowserContext:
    """A fresh browser profile pointed at ``server``; its pages report script errors."""
    context = await browser.new_context(
        base_url=server.url, viewport={"width": 1280, "height": 900}, locale="en-GB"
    )
    context.set_default_timeout(15_000)
    context.on("page", errors.watch)
    return context


async def make_user(server: RunningServer, username: str, role: str = "broadcaster") -> str:
    """Create an account on the running server; return its username."""
    await accounts.create_account(server.core.db, username, PASSWORD, role)
    return username


async def sign_in_by_api(context: BrowserContext, username: str) -> None:
    """Sign a browser context in through the API (its cookies then hold the session)."""
    response = await context.request.post(
        "/api/v1/auth/login", data={"username": username, "password": PASSWORD}
    )
    assert response.ok, await response.text()


async def screenshot(page: Page, name: str) -> None:
    """Save a full-page screenshot as build/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

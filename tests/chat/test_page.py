"""The chat panel in a real browser: markup in messages stays text, moderators delete live.

Needs Chromium at /usr/bin/chromium (skipped without it, unless STAGECAST_TEST_REQUIRE_BROWSER=1);
SQLite only, since the page is the subject here.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from stagecast.auth import service as accounts
from tests.chat.conftest import Live, Room

CHROMIUM = Path("/usr/bin/chromium")
XSS = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'


@pytest.fixture
def variant() -> tuple[str, str]:
    """SQLite with the in-process bus only."""
    return ("sqlite", "memory")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium."""
    if not CHROMIUM.exists():
        reason = f"Chromium not found at {CHROMIUM}"
        if os.environ.get("STAGECAST_TEST_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield launched
        finally:
            await launched.close()


SignIn = Callable[[str], Awaitable[Page]]


@pytest.fixture
async def signed_in(browser: Browser, live: Live) -> AsyncIterator[SignIn]:
    """Open pages in browser profiles holding a user's session and CSRF cookies; every profile
    is closed before the server stops (open event streams would hold its shutdown up)."""
    contexts: list[BrowserContext] = []

    async def open_as(username: str) -> Page:
        account = await accounts.get_account(live.core.db, username)
        session, csrf = await accounts.open_session(live.core.db, account.id, 1)
        context = await browser.new_context(base_url=live.http)
        contexts.append(context)
        context.set_default_timeout(10_000)
        await context.add_cookies(
            [
                {"name": "stagecast_session", "value": session, "url": live.http},
                {"name": "stagecast_csrf", "value": csrf, "url": live.http},
            ]
        )
        return await context.new_page()

    yield open_as
    for context in contexts:
        await context.close()


async def test_markup_is_shown_as_text_and_deletes_reach_every_viewer(
    signed_in: SignIn, room: Room
) -> None:
    """An XSS payload renders as its characters (no element, no script run) on every page, and
    a moderator's delete removes it from the others' view."""
    viewer = await signed_in("ann")
    moderator = await signed_in("mod")
    errors: list[str] = []
    for page in (viewer, moderator):
        page.on("pageerror", lambda error: errors.append(str(error)))
        await page.goto(f"/c/{room.slug}")
        await expect(page.locator("[data-chat=state]")).to_have_text("Live")

    box = viewer.get_by_role("textbox", name="Message")
    await box.fill(XSS)
    await expect(viewer.locator("[data-chat=count]")).to_have_text(f"{len(XSS)} / 500")
    await box.press("Enter")
    for page in (viewer, moderator):
        line = page.locator(".chat-line").filter(has_text="onerror")
        await expect(line.locator(".chat-body")).to_have_text(XSS)
        assert await page.locator("[data-chat=log] img, [data-chat=log] script").count() == 0
        assert await page.evaluate("window.pwned === undefined")

    await moderator.locator(".chat-line").first.hover()
    await moderator.get_by_role("button", name="Delete", exact=True).click()
    await expect(viewer.locator(".chat-line")).to_have_count(0)
    assert errors == []


async def test_the_counter_counts_code_points_and_refuses_too_long(
    signed_in: SignIn, room: Room
) -> None:
    """The post box counts characters as the server does and disables Send past the limit."""
    page = await signed_in("bob")
    await page.goto(f"/c/{room.slug}")
    await expect(page.locator("[data-chat=state]")).to_have_text("Live")
    await page.get_by_role("textbox", name="Message").fill("😀" * 3)
    await expect(page.locator("[data-chat=count]")).to_have_text("3 / 500")
    await page.get_by_role("textbox", name="Message").fill("x" * 501)
    await expect(page.locator("[data-chat=count]")).to_have_class(re.compile("over"))
    await expect(page.get_by_role("button", name="Send")).to_be_disabled()

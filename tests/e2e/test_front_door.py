"""The front door in a real browser: the home page follows a live channel, then its channel
page shows the offline slate with the recording; an unknown channel is a 404 page; the theme
toggle is remembered. One server and one short stream for the whole walk."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.async_api import Browser, expect

from stagecast.auth import service as accounts
from stagecast.channels import service as channels
from tests.conftest import RunningServer
from tests.e2e.audit import audit
from tests.e2e.conftest import PageErrors, new_context, screenshot
from tests.live.streaming import make_channel, publish, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.ffmpeg]

LIVE_TIMEOUT = 30_000  # ms: first segment, packager start-up, the home page's next refresh


async def test_home_follows_a_live_channel_and_its_page_goes_to_the_slate(
    browser: Browser, server: RunningServer
) -> None:
    """Live: a tile with a real thumbnail; ended: the tile leaves, the channel page shows the
    owner's next info and a link to the VOD; an unknown channel is a 404 page."""
    key = await make_channel(server, "front-tv")
    found = await channels.get_channel(server.core.db, "front-tv")
    await channels.update_channel(
        server.core.db,
        await accounts.get_account(server.core.db, "o-front-tv"),
        "front-tv",
        {"next_info": "Back on Friday at 20:00"},
    )
    errors = PageErrors()
    context = await new_context(browser, server, errors)
    page = await context.new_page()
    await page.goto("/")
    await expect(page.locator("#no-live")).to_be_visible()

    async with publish(server, key, 60):
        tile = page.locator('.live-tile[data-slug="front-tv"]')
        await expect(tile).to_be_visible(timeout=LIVE_TIMEOUT)
        await page.wait_for_function(
            "() => document.querySelector('.live-tile .live-picture')?.naturalWidth > 0",
            timeout=LIVE_TIMEOUT,
        )
        await expect(tile.locator(".uptime")).to_have_text(re.compile(r"^live for \d+:\d\d$"))
        assert await audit(page) == []
        await screenshot(page, "front-home-live")

        assert await server.runtime.live.manager.end(found.id, "ended by the test")
        await expect(tile).to_have_count(0, timeout=15_000)
        await expect(page.locator("#no-live")).to_be_visible()

    async with httpx.AsyncClient(base_url=server.url) as http:
        listed = await wait_for(
            http, "/api/v1/channels/front-tv/vods", lambda body: body["items"], timeout=60
        )
    vod_url = listed["items"][0]["page_url"]
    await page.goto("/c/front-tv")
    slate = page.locator("#offline-note")
    await expect(slate).to_contain_text("Back on Friday at 20:00")
    await expect(page.locator("#player")).to_be_hidden()
    assert await audit(page) == []
    await screenshot(page, "front-channel-offline")
    await page.locator(f'a[href="{vod_url}"]').first.click()
    await expect(page).to_have_url(re.compile(re.escape(vod_url) + "$"))

    response = await page.goto("/c/no-such-channel")
    assert response is not None
    assert response.status == 404
    await expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    assert await audit(page) == []
    assert errors.errors == []
    await context.close()


async def test_theme_follows_the_system_and_the_toggle_is_remembered(
    browser: Browser, server: RunningServer
) -> None:
    """A light system gets the light theme; the toggle switches to dark and a reload keeps it."""
    errors = PageErrors()
    context = await new_context(browser, server, errors)
    page = await context.new_page()
    await page.emulate_media(color_scheme="light")
    await page.goto("/")
    background = "() => getComputedStyle(document.body).backgroundColor"
    assert await page.evaluate(background) == "rgb(244, 245, 248)"
    toggle = page.get_by_role("button", name="Dark theme")
    await expect(toggle).to_have_attribute("aria-pressed", "false")
    assert await audit(page) == []
    await toggle.click()
    await expect(toggle).to_have_attribute("aria-pressed", "true")
    assert await page.evaluate(background) == "rgb(15, 17, 21)"
    await page.reload()
    assert await page.evaluate(background) == "rgb(15, 17, 21)"
    assert await audit(page) == []
    assert errors.errors == []
    await context.close()

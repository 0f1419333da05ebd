"""The studio's truth in a real browser, with a real encoder: what a reload or a late visit sees.

The channel list turns live by itself and shows a frame of the broadcast; a viewer who reloads
the page stays one unique viewer; the dashboard reloaded mid-broadcast keeps the minutes
before the reload in its charts; one opened after the end shows nobody watching and links the
ready VOD. The dashboard and the channel list pass the accessibility audit.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from playwright.async_api import Browser, Page, expect

from stagecast.auth import service as accounts
from stagecast.channels import service as channels
from tests.conftest import RunningServer
from tests.e2e.audit import audit
from tests.e2e.conftest import PageErrors, make_user, new_context, screenshot, sign_in_by_api
from tests.live.streaming import publish

pytestmark = [pytest.mark.browser, pytest.mark.ffmpeg]

LIVE_TIMEOUT = 30_000  # ms: first segment, packager start-up, first snapshot


async def _attr(page: Page, selector: str, name: str) -> float:
    value = await page.locator(selector).get_attribute(name)
    return float(value or 0)


async def _vod_ready(page: Page) -> int:
    """Wait until the channel's recording is ready; return its id."""
    deadline = time.monotonic() + 60
    while True:
        items = (await (await page.request.get("/api/v1/studio/vods")).json())["items"]
        if items and items[0]["status"] == "ready":
            return int(items[0]["id"])
        assert time.monotonic() < deadline, "the VOD did not become ready"
        await asyncio.sleep(0.3)


async def test_reloads_and_late_visits_see_the_truth(
    browser: Browser, server: RunningServer
) -> None:
    """Live list with a thumbnail, one unique viewer across reloads, charts kept, truth after."""
    await make_user(server, "host")
    owner = await accounts.get_account(server.core.db, "host")
    _, key = await channels.create_channel(server.core.db, owner, "truth", title="Truth show")
    errors = PageErrors()
    studio = await new_context(browser, server, errors)
    await sign_in_by_api(studio, "host")
    page = await studio.new_page()
    await page.goto("/studio")
    row = page.locator('li.channel-item[data-slug="truth"]')
    await expect(row.locator(".badge.offline")).to_be_visible()
    async with publish(server, key, 90):
        # The list refreshes by itself: live, with a frame of the broadcast.
        await expect(row).to_have_attribute("data-state", "live", timeout=LIVE_TIMEOUT)
        thumb = row.locator("img.channel-thumb")
        await expect(thumb).to_be_visible()
        await page.wait_for_function(
            "() => document.querySelector('img.channel-thumb').naturalWidth > 0"
        )
        assert await audit(page) == []
        await screenshot(page, "dashboard-01-channel-list-live")

        audience = await new_context(browser, server, errors)
        viewer = await audience.new_page()
        for _ in range(3):  # a viewer reloading the page is still one viewer
            await viewer.goto("/c/truth")
            await viewer.wait_for_function(
                "() => document.querySelector('video')?.currentTime > 0.5", timeout=LIVE_TIMEOUT
            )
        await page.goto("/studio/channels/truth/live")
        await expect(page.locator("#stat-viewers")).to_have_text("1", timeout=LIVE_TIMEOUT)
        await expect(page.locator("#stat-unique")).to_have_text("1")
        # Wait for a few history samples (every 3 s here), then reload the dashboard.
        await page.wait_for_function(
            "() => Number(document.querySelector('#bitrate-chart').dataset.points) >= 12",
            timeout=LIVE_TIMEOUT,
        )
        first = await _attr(page, "#bitrate-chart", "data-first")
        reloaded_at = time.time()
        await page.reload()
        await expect(page.locator("#dashboard-root")).to_have_attribute("data-feed", "open")
        await page.wait_for_function(
            "() => Number(document.querySelector('#viewers-chart').dataset.points) >= 3"
        )
        # The charts start before the reload, not at it.
        assert await _attr(page, "#bitrate-chart", "data-first") < reloaded_at - 6
        assert await _attr(page, "#bitrate-chart", "data-first") - first < 6
        await expect(page.locator("#stat-unique")).to_have_text("1")
        assert await audit(page) == []
        await screenshot(page, "dashboard-02-reloaded")
        await audience.close()
        await page.get_by_role("button", name="End stream…").click()
        await page.get_by_role("dialog").get_by_role("button", name="End stream").click()
        await expect(page.locator("#live-state")).to_have_text("Ended", timeout=LIVE_TIMEOUT)
    vod_id = await _vod_ready(page)

    late = await studio.new_page()
    await late.goto("/studio/channels/truth/live")
    await expect(late.locator("#live-state")).to_have_text("Ended", timeout=LIVE_TIMEOUT)
    await expect(late.locator("#stat-viewers")).to_have_text("0")
    await expect(late.locator("#stat-unique")).to_have_text("1")
    link = late.get_by_role("link", name="watch it")
    # The late feed's catch-up names the ready VOD (slower when the machine is busy).
    await expect(link).to_have_attribute("href", f"/v/{vod_id}", timeout=LIVE_TIMEOUT)
    await expect(late.locator("#vod-note")).not_to_contain_text("once it is processed")
    assert await audit(late) == []
    await screenshot(late, "dashboard-03-after-the-end")
    assert errors.errors == []
    await studio.close()

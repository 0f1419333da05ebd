"""A whole show run from the studio pages, in a real browser, with a real encoder.

The broadcaster signs in, creates a channel, reveals the key and streams a test pattern with
ffmpeg; the dashboard turns live and its bitrate and viewer count move while a second browser
watches the viewer page; a chat message is posted and deleted; the stream is ended; the VOD is
found in the library, played, edited and deleted.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from playwright.async_api import Browser, Locator, Page, expect

from tests.conftest import RunningServer
from tests.e2e.audit import audit
from tests.e2e.conftest import (
    PASSWORD,
    PageErrors,
    make_user,
    new_context,
    screenshot,
    sign_in_by_api,
)
from tests.live.streaming import publish

pytestmark = [pytest.mark.browser, pytest.mark.ffmpeg]

LIVE_TIMEOUT = 30_000  # ms: first segment, packager start-up, first snapshot


async def _number(page: Page, selector: str, attribute: str = "data-value") -> float:
    value = await page.locator(selector).get_attribute(attribute)
    return float(value or 0)


async def _playing(page: Page, selector: str, past: float = 1.0, timeout: float = 30_000) -> None:
    """Wait until the video element's playback position passes ``past`` seconds."""
    await page.wait_for_function(
        "([sel, past]) => document.querySelector(sel)?.currentTime > past",
        arg=[selector, past],
        timeout=timeout,
    )


async def _sign_in(page: Page, username: str) -> None:
    await page.goto("/login")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()


async def _create_channel_and_reveal_key(page: Page) -> str:
    """Sign in as host, create "friday", reveal its key (masked until then); return the key."""
    await _sign_in(page, "host")
    await expect(page).to_have_url(re.compile(r"/studio$"))
    await page.get_by_label("Slug").fill("friday")
    await page.get_by_label("Title").fill("Friday show")
    await page.get_by_role("button", name="Create channel").click()
    await expect(page).to_have_url(re.compile(r"/studio/channels/friday#go-live$"))
    key_input = page.get_by_label("Stream key", exact=True)
    await expect(key_input).to_have_attribute("type", "password")
    await expect(key_input).not_to_have_value("")
    await page.get_by_role("button", name="Reveal").click()
    await expect(key_input).to_have_attribute("type", "text")
    key = await key_input.input_value()
    await page.get_by_role("button", name="Hide").click()
    await screenshot(page, "05-go-live")
    return key


async def _open_dashboard(page: Page) -> None:
    """Follow the link to the dashboard; it says offline."""
    await page.get_by_role("link", name="Live dashboard").click()
    await expect(page).to_have_url(re.compile(r"/studio/channels/friday/live$"))
    await expect(page.locator("#live-state")).to_have_attribute("data-state", "offline")
    await expect(page.locator("#offline-note")).to_be_visible()
    await screenshot(page, "06-dashboard-offline")
    assert await audit(page) == []


async def _see_it_go_live(page: Page) -> None:
    """State, health, bitrate (number and chart) and the preview all move."""
    await expect(page.locator("#live-state")).to_have_attribute(
        "data-state", "live", timeout=LIVE_TIMEOUT
    )
    await expect(page.locator("#health-verdict")).to_have_attribute(
        "data-verdict", re.compile(r"^(good|degraded|bad)$"), timeout=LIVE_TIMEOUT
    )
    await expect(page.locator("#bitrate-chart")).to_have_attribute(
        "data-points", re.compile(r"^([3-9]|\d{2,})$"), timeout=LIVE_TIMEOUT
    )
    await page.wait_for_function(
        "() => Number(document.getElementById('stat-bitrate').dataset.value) > 50",
        timeout=LIVE_TIMEOUT,
    )
    await _playing(page, "#preview")


async def _watch(page: Page, viewer: Page) -> None:
    """The viewer page plays; the dashboard's viewer count and chart go up."""
    before = await _number(page, "#stat-viewers")
    await viewer.goto("/c/friday")
    await expect(viewer.locator("#live-state")).to_have_text("LIVE")
    await _playing(viewer, "#player")
    await page.wait_for_function(
        f"() => Number(document.getElementById('stat-viewers').dataset.value) > {before}",
        timeout=LIVE_TIMEOUT,
    )
    await expect(page.locator("#viewers-chart")).to_have_attribute(
        "data-last", re.compile(r"^[1-9]\d*$")
    )
    assert await _number(page, "#bitrate-chart", "data-last") > 50
    # A dozen seconds on air, so the broadcast's history has a few samples to chart.
    await page.wait_for_function(
        "() => Number(document.getElementById('bitrate-chart').dataset.points) >= 12",
        timeout=LIVE_TIMEOUT,
    )


async def _post(viewer: Page, text: str) -> None:
    await viewer.get_by_role("textbox", name="Message").fill(text)
    await viewer.get_by_role("button", name="Send").click()


async def _moderate_chat(page: Page, viewer: Page) -> None:
    """The fan's message reaches the dashboard, where it is deleted (gone for the fan too);
    then the fan is timed out from the dashboard and cannot post (the input is disabled)."""
    await _post(viewer, "Hello from the audience <b>!</b>")
    line = page.locator("#chat .chat-line").filter(has_text="Hello from the audience <b>!</b>")
    await expect(line).to_have_count(1)
    await expect(line.locator(".chat-author")).to_have_text("fan")
    await screenshot(viewer, "07-viewer-page")
    await line.hover()
    await line.get_by_role("button", name="Delete").click()
    await expect(line).to_have_count(0)
    await expect(viewer.locator("#chat .chat-line")).to_have_count(0)

    await _post(viewer, "second try")
    second = page.locator("#chat .chat-line").filter(has_text="second try")
    await second.hover()
    await second.get_by_role("button", name="Timeout").click()
    # The fan is told once the timeout is stored; a post sent before that would be fair.
    notice = viewer.locator("#chat [data-chat=notice]")
    await expect(notice).to_contain_text("You are timed out until")
    # The fan's input is disabled until the timeout ends, the time left shown beside it.
    await expect(viewer.get_by_role("textbox", name="Message")).to_be_disabled()
    await expect(viewer.locator("#chat [data-chat=timeout]")).to_contain_text("left")
    await screenshot(page, "08-dashboard-live")
    assert await audit(page) == []


async def _end_stream(page: Page, viewer: Page, encoder: asyncio.subprocess.Process) -> None:
    """End from the dashboard (after a confirmation): the encoder is let go, viewers see it."""
    await page.get_by_role("button", name="End stream…").click()
    await page.get_by_role("dialog").get_by_role("button", name="End stream").click()
    await expect(page.locator("#live-state")).to_have_attribute("data-state", "ended")
    await expect(page.get_by_role("button", name="End stream…")).to_be_hidden()
    async with asyncio.timeout(20):
        await encoder.wait()
    await expect(viewer.locator("#live-state")).not_to_have_text("LIVE", timeout=15_000)


async def _see_history(page: Page) -> None:
    """After the stream, the dashboard charts the broadcast's history."""
    await expect(page.locator("#session-report")).to_be_visible()
    await expect(page.locator("#session-chart")).to_have_attribute(
        "data-points", re.compile(r"^[1-9]\d*$")
    )
    await expect(page.locator("#sessions li")).to_have_count(1)
    await screenshot(page, "09-dashboard-after")


async def _find_and_play_the_vod(page: Page) -> Locator:
    """The library lists the recording; it becomes ready and plays (the position advances)."""
    await page.get_by_role("link", name="Recordings").click()
    await expect(page).to_have_url(re.compile(r"/studio/library\?channel=friday$"))
    item = page.locator(".vod-item")
    await expect(item).to_have_count(1)
    await expect(item).to_have_attribute("data-status", "ready", timeout=30_000)
    await expect(page.locator("#library-total")).to_have_text("1 recording")
    await expect(item.locator("img.thumb")).to_be_visible()
    await screenshot(page, "10-library")
    assert await audit(page) == []

    await item.get_by_role("button", name=re.compile(r"^Play ")).click()
    dialog = page.get_by_role("dialog")
    await _playing(page, "dialog video", past=2.0)
    await screenshot(page, "11-library-player")
    await dialog.get_by_role("button", name="Close").click()
    await expect(dialog).to_have_count(0)
    return item


async def _edit_filter_and_delete(page: Page, item: Locator) -> None:
    """Rename and change visibility; the title search finds it; delete (after a confirmation)."""
    await item.get_by_role("button", name=re.compile(r"^Edit ")).click()
    await item.get_by_label("Title").fill("Friday show, the recording")
    await item.get_by_label("Visibility").select_option("unlisted")
    await item.get_by_role("button", name="Save").click()
    await expect(item.locator("h3")).to_have_text("Friday show, the recording")
    await expect(item).to_contain_text("visibility: unlisted")

    search = page.get_by_label("Title contains")
    apply = page.get_by_role("button", name="Apply filters")
    await search.fill("nothing like it")
    await apply.click()
    await expect(page.locator("#no-vods")).to_be_visible()
    await search.fill("recording")
    await apply.click()
    await expect(item).to_have_count(1)
    await expect(page.locator("#library-total")).to_contain_text("no total for a title search")
    await search.fill("")
    await apply.click()
    await expect(page.locator("#library-total")).to_have_text("1 recording")

    await item.get_by_role("button", name=re.compile(r"^Delete ")).click()
    await page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    await expect(item).to_have_count(0)
    await page.reload()
    await expect(page.locator("#no-vods")).to_be_visible()
    await expect(page.locator("#library-total")).to_have_text("0 recordings")


@pytest.mark.timeout(180)
async def test_broadcaster_runs_a_whole_show_from_the_studio(
    browser: Browser, server: RunningServer
) -> None:
    """Go live, watch health and viewers move, moderate chat, end, find and play the VOD."""
    await make_user(server, "host")
    await make_user(server, "fan", "viewer")
    errors = PageErrors()
    studio = await new_context(browser, server, errors)
    page = await studio.new_page()
    key = await _create_channel_and_reveal_key(page)
    await _open_dashboard(page)
    async with publish(server, key, 90) as encoder:
        await _see_it_go_live(page)
        audience = await new_context(browser, server, errors)
        await sign_in_by_api(audience, "fan")
        viewer = await audience.new_page()
        await _watch(page, viewer)
        await _moderate_chat(page, viewer)
        await _end_stream(page, viewer, encoder)
        await audience.close()
    await _see_history(page)
    item = await _find_and_play_the_vod(page)
    await _edit_filter_and_delete(page, item)
    assert errors.errors == []
    await studio.close()

"""The chat replay beside a VOD in Chromium: in step with playback, after seeks and at 2x,
escaped, and switched off and on with a toggle that is remembered."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.auth import service as accounts
from stagecast.channels import service as channels
from stagecast.chat import messages
from stagecast.chat.messages import Draft, OnAirMark
from stagecast.db import Kind
from stagecast.live.storage import LocalStorage
from stagecast.vod import service as vods
from stagecast.vod.models import vod
from tests.conftest import RunningServer
from tests.e2e.audit import audit
from tests.e2e.conftest import PASSWORD, PageErrors, new_context, screenshot
from tests.vod.media import EPOCHS, Media, end_session, make_media, record_session

pytestmark = pytest.mark.browser

# The recording: 8 s, then the encoder was away for 3 s (``record_session``), then 6 s more.
FIRST_EPOCH = float(EPOCHS[0][0])
AWAY = 3.0
# One message every second of the 17 s broadcast, half a second after each full second; the
# ones at 8.5, 9.5 and 10.5 were sent while the encoder was away.
TIMES = [i + 0.5 for i in range(17)]
HOSTILE = '<img src=x onerror="window.pwned=1"><b>bold?</b>'


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    """Real fMP4 renditions (14 s over two encoder epochs), encoded once for this module."""
    return make_media(tmp_path_factory.mktemp("media"))


async def recorded_with_chat(server: RunningServer, media: Media) -> int:
    """host streams on "show" (reconnecting once), ann chats at ``TIMES`` (broadcast seconds);
    the VOD is built; return its id."""
    db = server.core.db
    host = await accounts.create_account(db, "host", PASSWORD, "broadcaster")
    ann = await accounts.create_account(db, "ann", PASSWORD, "viewer")
    show, _ = await channels.create_channel(db, host, "show")
    storage = LocalStorage(server.core.settings.data_dir / "media")
    session = await record_session(db, storage, media, show.id, title="Replay night")
    drafts = [
        Draft(ann.id, ann.username, HOSTILE if t == 4.5 else f"line at {t}",
              onair=OnAirMark(session.session_id, t))
        for t in TIMES
    ]  # fmt: skip

    async def unit(conn: AsyncConnection) -> None:
        await messages.insert_messages(conn, show.id, drafts)

    await db.run(unit, kind=Kind.WRITE)
    await end_session(db, session.session_id, server.runtime.live.hooks)
    vod_id = await db.run(
        lambda conn: _vod_of(conn, session.session_id), kind=Kind.READ, name="test_vod_of"
    )
    deadline = time.monotonic() + 60
    while True:
        found = await vods.find(db, vod_id)
        assert found is not None
        if found.status == "ready":
            return vod_id
        assert found.status == "processing", found.failure_reason
        assert time.monotonic() < deadline, "the VOD was not built in time"
        await asyncio.sleep(0.1)


async def _vod_of(conn: AsyncConnection, session_id: int) -> int:
    return int(
        (await conn.execute(select(vod.c.id).where(vod.c.session_id == session_id))).scalar_one()
    )


def broadcast_time(position: float) -> float:
    """Return the broadcast time (what ``media_time`` counts) shown at a recording position."""
    return position if position < FIRST_EPOCH else position + AWAY


async def snapshot(page: Page) -> dict[str, Any]:
    """Return the player's position and the media times of the lines shown, read together."""
    state: dict[str, Any] = await page.evaluate(
        """() => ({
            time: document.getElementById("player").currentTime,
            rate: document.getElementById("player").playbackRate,
            shown: [...document.querySelectorAll("#replay .chat-log li")]
                .map((li) => Number(li.dataset.mediaTime)),
        })"""
    )
    return state


async def wait_in_step(page: Page, past: float) -> None:
    """Play until ``past`` seconds, checking on the way that what is shown matches the
    position: nothing sent after it, everything sent more than a second before it."""
    deadline = time.monotonic() + 30
    while True:
        state = await snapshot(page)
        now, shown = broadcast_time(state["time"]), state["shown"]
        # The log moves on `timeupdate` (4 times a second): at most a second ago, which at 2x
        # is two seconds of the recording.
        settled = broadcast_time(max(0.0, state["time"] - 1.0 * state["rate"]))
        assert shown == sorted(shown)
        assert all(t <= now + 0.01 for t in shown), state
        assert [t for t in TIMES if t <= settled] == [t for t in shown if t <= settled], state
        if state["time"] > past:
            return
        assert time.monotonic() < deadline, f"playback did not reach {past} s: {state}"
        await page.wait_for_function(
            "(t) => document.getElementById('player').currentTime > t", arg=state["time"] + 0.2
        )


async def shows_exactly(page: Page, expected: list[float]) -> None:
    """Wait until the lines shown are those of ``expected`` media times."""
    await page.wait_for_function(
        """(expected) => JSON.stringify([...document.querySelectorAll("#replay .chat-log li")]
            .map((li) => Number(li.dataset.mediaTime))) === JSON.stringify(expected)""",
        arg=expected,
    )


@pytest.mark.timeout(150)
async def test_chat_replay_follows_playback_seeks_and_the_toggle(
    browser: Browser, server: RunningServer, media: Media, tmp_path: Path
) -> None:
    """Messages appear as playback reaches the moment they were sent (also at 2x and across an
    encoder reconnect), a seek back removes the later ones and a seek forward brings them,
    text is shown as text, and the toggle hides the panel, also after a reload."""
    vod_id = await recorded_with_chat(server, media)
    errors = PageErrors()
    context = await new_context(browser, server, errors)
    page = await context.new_page()
    await page.goto(f"/v/{vod_id}")
    panel = page.get_by_role("complementary", name="Chat replay")
    toggle = page.get_by_role("checkbox", name="Chat replay")
    await expect(panel).to_be_visible()
    await expect(toggle).to_be_checked()
    await expect(panel.locator("li")).to_have_count(0)

    await page.evaluate(
        "() => { const v = document.getElementById('player'); v.muted = true; v.play(); }"
    )
    await wait_in_step(page, 5.0)
    hostile = panel.locator("li", has_text="bold?")
    await expect(hostile.locator(".chat-body")).to_have_text(HOSTILE)
    assert await panel.locator("img, b").count() == 0
    assert await page.evaluate("() => window.pwned === undefined")
    await page.evaluate("() => { document.getElementById('player').playbackRate = 2; }")
    await wait_in_step(page, 9.0)
    await screenshot(page, "chat-replay")

    await page.evaluate(
        "() => { const v = document.getElementById('player'); v.pause(); v.currentTime = 3; }"
    )
    await shows_exactly(page, [0.5, 1.5, 2.5])
    # Past the reconnect the recording is 3 s behind the broadcast: what was said while the
    # encoder was away shows at once, with what was said as the picture came back.
    await page.evaluate("() => { document.getElementById('player').currentTime = 8.6; }")
    await shows_exactly(page, [t for t in TIMES if t <= 11.6])
    await page.evaluate("() => { document.getElementById('player').currentTime = 12.2; }")
    await shows_exactly(page, [t for t in TIMES if t <= 15.2])
    assert await audit(page) == []

    await toggle.uncheck()
    await expect(panel).to_be_hidden()
    await page.reload()
    await expect(page.get_by_role("checkbox", name="Chat replay")).not_to_be_checked()
    await expect(panel).to_be_hidden()
    await page.get_by_role("checkbox", name="Chat replay").check()
    await expect(panel).to_be_visible()
    await page.evaluate(
        "() => { const v = document.getElementById('player'); v.currentTime = 6.8; }"
    )
    await shows_exactly(page, [0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5])
    assert errors.errors == []
    await context.close()

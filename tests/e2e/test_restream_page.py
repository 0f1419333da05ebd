"""The studio's restream page in a real browser: add, refuse, enable, remove a destination."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, expect

from stagecast.auth import service as accounts
from stagecast.channels import service as channels
from tests.conftest import RunningServer
from tests.e2e.audit import audit
from tests.e2e.conftest import PageErrors, make_user, new_context, sign_in_by_api

pytestmark = pytest.mark.browser


async def test_a_broadcaster_manages_destinations_from_the_studio(
    browser: Browser, server: RunningServer
) -> None:
    owner = await accounts.get_account(server.core.db, await make_user(server, "simul"))
    await channels.create_channel(server.core.db, owner, "simul-show")
    errors = PageErrors()
    context = await new_context(browser, server, errors)
    await sign_in_by_api(context, "simul")
    page = await context.new_page()
    await page.goto("/studio/channels/simul-show/restream")
    await expect(page.locator("#no-destinations")).to_be_visible()
    assert await audit(page) == []

    await page.get_by_label("Name").fill("Twitch")
    await page.get_by_label("Server URL").fill("http://not-rtmp.example/app")
    await page.get_by_label("Stream key").fill("live_123456789_abcd")
    await page.get_by_role("button", name="Add destination").click()
    await expect(page.locator("#restream-error")).to_contain_text("rtmp:// or rtmps://")

    await page.get_by_label("Server URL").fill("rtmp://live.twitch.tv/app")
    await page.get_by_role("button", name="Add destination").press("Enter")
    row = page.locator("#destination-rows tr")
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text("Twitch")
    await expect(row).to_contain_text("…abcd")  # the key, masked
    await expect(row).not_to_contain_text("live_123456789")
    await expect(row).to_contain_text("Not pushed yet")
    await expect(page.locator("#restream-error")).to_have_text("")

    toggle = page.get_by_label("Enable Twitch")
    async with page.expect_response(lambda r: r.request.method == "PATCH") as patched:
        await toggle.uncheck()
    assert (await patched.value).status == 200
    await expect(page.get_by_label("Enable Twitch")).not_to_be_checked()
    stored = (await context.request.get("/api/v1/channels/simul-show/destinations")).json
    assert (await stored())["items"][0]["enabled"] is False
    assert await audit(page) == []

    await page.get_by_role("button", name="Remove Twitch").click()
    await expect(page.locator("#no-destinations")).to_be_visible()
    assert errors.errors == []
    await context.close()

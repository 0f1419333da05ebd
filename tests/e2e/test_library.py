"""The VOD library page against the keyset-paged API, with many recordings and no stream."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, expect

from stagecast.auth import service as accounts
from stagecast.channels import service as channels
from tests.conftest import RunningServer
from tests.e2e.conftest import PASSWORD, PageErrors, make_user, new_context, sign_in_by_api
from tests.vod.conftest import add_vods

pytestmark = pytest.mark.browser


async def test_library_pages_with_the_cursor_and_filters(
    browser: Browser, server: RunningServer
) -> None:
    """Load more appends the next page (no repeats, newest first); filters narrow the list."""
    await make_user(server, "archivist")
    account = await accounts.authenticate(server.core.db, "archivist", PASSWORD)
    assert account is not None
    first, _ = await channels.create_channel(server.core.db, account, "first-tv")
    second, _ = await channels.create_channel(server.core.db, account, "second-tv")
    await add_vods(server.core.db, first, 23, title="Morning")
    await add_vods(server.core.db, second, 2, title="Evening")
    errors = PageErrors()
    context = await new_context(browser, server, errors)
    await sign_in_by_api(context, "archivist")
    page = await context.new_page()

    await page.goto("/studio/library")
    items = page.locator(".vod-item")
    await expect(items).to_have_count(20)
    await expect(page.locator("#library-total")).to_have_text("25 recordings")
    await expect(items.first.locator("h3")).to_have_text(re.compile(r"^Evening 1 · "))
    await page.get_by_role("button", name="Load more").click()
    await expect(items).to_have_count(25)
    await expect(page.get_by_role("button", name="Load more")).to_be_hidden()
    ids = [int(i) for i in await items.evaluate_all("(all) => all.map((e) => e.dataset.vodId)")]
    assert ids == sorted(set(ids), reverse=True)

    await page.get_by_label("Channel").select_option("second-tv")
    await expect(items).to_have_count(2)
    await expect(page.locator("#library-total")).to_have_text("2 recordings")
    await expect(page).to_have_url(re.compile(r"/studio/library\?channel=second-tv$"))
    await page.get_by_label("Status").select_option("ready")
    await expect(page.locator("#no-vods")).to_be_visible()
    await expect(page.locator("#library-total")).to_have_text("0 recordings")

    # The address keeps the filters: a reload (or a shared link) shows the same list.
    await page.get_by_label("Status").select_option("")
    await page.get_by_label("Channel").select_option("first-tv")
    await page.get_by_label("Title contains").fill("Morning 2")
    await page.get_by_role("button", name="Apply filters").click()
    await expect(items).to_have_count(4)  # Morning 2, 20, 21, 22
    await page.reload()
    await expect(page.get_by_label("Title contains")).to_have_value("Morning 2")
    await expect(items).to_have_count(4)
    assert errors.errors == []
    await context.close()

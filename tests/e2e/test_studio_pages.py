"""The studio pages in a real browser, without a stream: sign-in, channels, settings, the key."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, Page, expect

from stagecast.auth import service as accounts
from stagecast.channels import service as channels
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

pytestmark = pytest.mark.browser


async def _focus_ring(page: Page) -> str:
    """Return the outline of the focused element (what keyboard users see)."""
    style: str = await page.evaluate(
        "() => { const s = getComputedStyle(document.activeElement);"
        " return s.outlineStyle + ' ' + s.outlineWidth; }"
    )
    return style


async def test_keyboard_alone_signs_in_and_creates_a_channel(
    browser: Browser, server: RunningServer
) -> None:
    """Sign-in and channel creation work with the keyboard only, focus always visible."""
    await make_user(server, "keys")
    errors = PageErrors()
    context = await new_context(browser, server, errors)
    page = await context.new_page()

    await page.goto("/studio")
    await expect(page).to_have_url(re.compile(r"/login\?next=%2Fstudio$"))
    await expect(page.get_by_label("Username")).to_be_focused()
    await page.keyboard.type("keys")
    await page.keyboard.press("Tab")
    assert (await _focus_ring(page)).startswith("solid")
    await page.keyboard.type(PASSWORD)
    await screenshot(page, "01-login")
    assert await audit(page) == []
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(re.compile(r"/studio$"))
    await expect(page.locator("#whoami")).to_have_text("keys")
    await expect(page.locator("#no-channels")).to_be_visible()

    await page.get_by_label("Slug").focus()
    await page.keyboard.type("by-keyboard")
    await page.keyboard.press("Tab")
    await page.keyboard.type("Typed, not clicked")
    await page.keyboard.press("Tab")
    await page.keyboard.press("Tab")
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("button", name="Create channel")).to_be_focused()
    assert (await _focus_ring(page)).startswith("solid")
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(re.compile(r"/studio/channels/by-keyboard#go-live$"))
    await expect(page.locator("#channel-title")).to_have_text("Typed, not clicked")
    assert errors.errors == []
    await context.close()


async def test_go_live_panel_hides_reveals_and_rotates_the_key(
    browser: Browser, server: RunningServer
) -> None:
    """The key is masked until revealed; rotating asks first, and Cancel keeps the key."""
    await make_user(server, "host")
    errors = PageErrors()
    context = await new_context(browser, server, errors)
    await sign_in_by_api(context, "host")
    page = await context.new_page()
    await page.goto("/studio")
    await page.get_by_label("Slug").fill("night-show")
    await page.get_by_label("Title").fill("Night show")
    await page.get_by_label("Visibility").select_option("private")
    await page.get_by_role("button", name="Create channel").click()
    await expect(page).to_have_url(re.compile(r"/studio/channels/night-show"))

    key_input = page.get_by_label("Stream key", exact=True)
    await expect(key_input).to_have_attribute("type", "password")
    await expect(key_input).not_to_have_value("")
    first_key = await key_input.input_value()
    assert first_key
    server_url = await page.get_by_label("Server", exact=True).input_value()
    assert re.fullmatch(r"rtmp://127\.0\.0\.1:\d+/live", server_url)
    await page.get_by_role("button", name="Reveal").click()
    await expect(key_input).to_have_attribute("type", "text")
    await expect(page.get_by_role("button", name="Hide")).to_have_attribute("aria-pressed", "true")
    await page.get_by_role("button", name="Hide").click()
    await expect(key_input).to_have_attribute("type", "password")

    await page.get_by_role("button", name="Rotate key…").click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_contain_text("old key stops working")
    await screenshot(page, "03-rotate-confirmation")
    await dialog.get_by_role("button", name="Cancel").click()
    await expect(dialog).to_have_count(0)
    assert await key_input.input_value() == first_key

    await page.get_by_role("button", name="Rotate key…").click()
    await page.get_by_role("dialog").get_by_role("button", name="Rotate key").click()
    await expect(page.locator("#key-status")).to_contain_text("New stream key made")
    second_key = await key_input.input_value()
    assert second_key
    assert second_key != first_key
    assert await channels.verify_stream_key(server.core.db, second_key) is not None
    assert await channels.verify_stream_key(server.core.db, first_key) is None

    # A reload forgets the key: it is shown only when made.
    await page.reload()
    await expect(page.locator("#channel-title")).to_have_text("Night show")
    await expect(key_input).to_have_value("")
    await expect(page.get_by_role("button", name="Reveal")).to_be_disabled()
    assert errors.errors == []
    await context.close()


async def test_channel_settings_chat_filters_and_moderators_are_saved(
    browser: Browser, server: RunningServer
) -> None:
    """Every setting on the channel page goes through the API and shows what was stored."""
    await make_user(server, "owner")
    await make_user(server, "helper", "viewer")
    errors = PageErrors()
    context = await new_context(browser, server, errors)
    await sign_in_by_api(context, "owner")
    page = await context.new_page()
    await page.goto("/studio")
    await page.get_by_label("Slug").fill("settings-show")
    await page.get_by_role("button", name="Create channel").click()
    await expect(page.locator("#channel").and_(page.locator("[data-loaded=true]"))).to_have_count(1)

    await page.get_by_label("Title", exact=True).fill("Renamed show")
    await page.get_by_label("Visibility").select_option("unlisted")
    await page.get_by_label("Encoding").select_option("abr")
    await page.get_by_label("DVR window, minutes").fill("30")
    await page.get_by_label("Description").fill("Weekly, on Fridays")
    await page.get_by_label("Next stream").fill("Friday at 8 pm")
    await page.get_by_role("button", name="Save channel").click()
    await expect(page.locator("#settings-status")).to_have_text("Saved.")
    stored = await channels.get_channel(server.core.db, "settings-show")
    assert (stored.title, stored.visibility, stored.profile) == ("Renamed show", "unlisted", "abr")
    assert stored.dvr_window_seconds == 1800
    assert stored.next_info == "Friday at 8 pm"  # the offline slate of /c/SLUG shows it

    await page.get_by_label("Slow mode, seconds between messages").fill("5")
    await page.get_by_label("Visitors who are not signed in can read the chat").uncheck()
    await page.get_by_role("button", name="Save chat settings").click()
    await expect(page.locator("#chat-status")).to_have_text("Saved.")

    await page.get_by_label("Word, phrase or pattern").fill("spoiler")
    await page.get_by_label("Then").select_option("hold")
    await page.get_by_role("button", name="Add filter").click()
    await expect(page.locator("#filters li")).to_have_count(1)
    await expect(page.locator("#filters li")).to_contain_text("spoiler")

    await page.get_by_label("Username").fill("helper")
    await page.get_by_label("ban users").uncheck()
    await page.get_by_role("button", name="Add moderator").click()
    moderator = page.locator('#moderators li[data-username="helper"]')
    await expect(moderator).to_be_visible()
    await expect(moderator.get_by_label("ban")).not_to_be_checked()
    await expect(moderator.get_by_label("delete")).to_be_checked()

    await page.reload()
    await expect(page.get_by_label("Slow mode, seconds between messages")).to_have_value("5")
    await expect(
        page.get_by_label("Visitors who are not signed in can read the chat")
    ).not_to_be_checked()
    await expect(page.locator("#filters li")).to_have_count(1)
    await expect(page.locator('#moderators li[data-username="helper"]')).to_be_visible()
    await screenshot(page, "04-channel-settings")
    assert await audit(page) == []

    await page.locator("#filters li").get_by_role("button", name="Remove").click()
    await expect(page.locator("#filters li")).to_have_count(0)
    await page.locator('#moderators li[data-username="helper"]').get_by_role("button").click()
    await page.get_by_role("dialog").get_by_role("button", name="Remove").click()
    await expect(page.locator("#moderators li")).to_have_count(0)
    assert errors.errors == []
    await context.close()


async def test_text_from_users_is_rendered_as_text(browser: Browser, server: RunningServer) -> None:
    """A channel title full of markup shows as typed on every page and runs nothing."""
    await make_user(server, "mallory")
    payload = '<img src=x onerror="window.pwned=1"><b>bold</b>'
    errors = PageErrors()
    context = await new_context(browser, server, errors)
    await sign_in_by_api(context, "mallory")
    page = await context.new_page()
    await page.goto("/studio")
    await page.get_by_label("Slug").fill("markup")
    await page.get_by_label("Title").fill(payload)
    await page.get_by_role("button", name="Create channel").click()
    await expect(page.locator("#channel-title")).to_have_text(payload)
    for path in ("/studio/channels/markup/live", "/studio/library", "/studio"):
        await page.goto(path)
        if path == "/studio/library":  # the title is in the channel filter
            await expect(page.get_by_label("Channel")).to_contain_text(payload)
        else:
            await expect(page.get_by_text(payload).first).to_be_visible()
        assert await page.locator("main img[src=x], main b").count() == 0
        assert await page.evaluate("() => window.pwned === undefined")
    await expect(page.locator(".channel-item .badge").last).to_have_text("Offline")
    await screenshot(page, "02-channel-list")
    assert await audit(page) == []
    assert errors.errors == []
    await context.close()


async def test_someone_elses_channel_shows_not_found(
    browser: Browser, server: RunningServer
) -> None:
    """Another broadcaster's settings and dashboard say "not found" and reveal nothing."""
    owner = await make_user(server, "alice")
    await make_user(server, "bob")
    account = await accounts.authenticate(server.core.db, owner, PASSWORD)
    assert account is not None
    await channels.create_channel(server.core.db, account, "alices", title="Alice's secret plans")
    errors = PageErrors()
    context = await new_context(browser, server, errors)
    await sign_in_by_api(context, "bob")
    page = await context.new_page()
    await page.goto("/studio/channels/alices")
    await expect(page.locator("#page-error")).to_contain_text("not found")
    await page.goto("/studio/channels/alices/live")
    await expect(page.locator("#page-error")).to_contain_text("not found")
    assert await page.get_by_text("Alice's secret plans").count() == 0
    assert errors.errors == []
    await context.close()


async def test_sign_in_reports_errors_and_returns_only_to_this_site(
    browser: Browser, server: RunningServer
) -> None:
    """A wrong password is announced; after sign-in, ``next`` may not lead off the site."""
    await make_user(server, "returning")
    errors = PageErrors()
    context = await new_context(browser, server, errors)
    page = await context.new_page()
    await page.goto("/login?next=/%5Cevil.example/")
    await page.get_by_label("Username").fill("returning")
    await page.get_by_label("Password").fill("not the password")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_have_text("wrong username or password")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(f"{server.url}/studio")

    await page.goto("/studio/library?status=ready")  # signed in: no detour
    await expect(page.get_by_label("Status")).to_have_value("ready")
    await context.clear_cookies()
    await page.goto("/studio/library?status=failed")
    await expect(page).to_have_url(
        re.compile(r"/login\?next=%2Fstudio%2Flibrary%3Fstatus%3Dfailed$")
    )
    await page.get_by_label("Username").fill("returning")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(f"{server.url}/studio/library?status=failed")
    await expect(page.get_by_label("Status")).to_have_value("failed")
    assert errors.errors == []
    await context.close()

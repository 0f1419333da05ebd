"""Accounts in a real browser: an invite signs someone up, a password change signs out the
other sessions, and "Sign in" from a channel's chat comes back to the channel."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

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

NEW_PASSWORD = "blue teapot 77"


async def signed_in(context: BrowserContext) -> bool:
    """Tell whether the context's session cookie still signs it in."""
    return (await context.request.get("/api/v1/auth/me")).ok


async def make_invite(page: Page) -> str:
    """Create a viewer invite on the open invites page; return its sign-up link."""
    await page.get_by_label("Role").select_option("viewer")
    await page.get_by_role("button", name="Create invite").click()
    link = page.get_by_label("Sign-up link")
    await expect(link).to_be_focused()
    value = await link.input_value()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/signup\?invite=inv_\w+_\S+", value), value
    return value


async def test_invite_sign_up_then_a_password_change_signs_out_the_rest(
    browser: Browser, server: RunningServer
) -> None:
    """An admin's invite link signs a viewer up (to the home page, named in the header); a
    password change there ends the viewer's other session, and the new password works."""
    server.core.settings.registration = "invite"
    await make_user(server, "boss", role="admin")
    errors = PageErrors()
    admin = await new_context(browser, server, errors)
    await sign_in_by_api(admin, "boss")
    invites = await admin.new_page()
    await invites.goto("/studio/invites")
    await expect(invites.locator("#no-invites")).to_be_visible()
    link = await make_invite(invites)
    await expect(invites.locator(".invite-item")).to_have_count(1)
    await expect(invites.locator(".invite-item .badge")).to_have_text("open")
    await screenshot(invites, "accounts-invites")
    assert await audit(invites) == []

    newcomer = await new_context(browser, server, errors)
    page = await newcomer.new_page()
    await page.goto(link)
    await expect(page.get_by_label("Invite code")).to_have_value(link.split("invite=")[1])
    await page.get_by_label("Username").fill("newbie")
    await page.get_by_label("Password").fill("newbie-pass")
    await page.get_by_role("button", name="Create account").click()
    await expect(page.locator("#signup-error")).to_have_text(
        "password must not contain the username"
    )
    assert await audit(page) == []
    await screenshot(page, "accounts-signup")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    await expect(page).to_have_url(f"{server.url}/")
    await expect(page.locator("#whoami")).to_have_text("newbie")
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    await invites.reload()
    await expect(invites.locator(".invite-item .badge")).to_have_text("used")
    await expect(invites.locator(".invite-item")).to_contain_text("used by newbie")

    elsewhere = await new_context(browser, server, errors)
    await sign_in_by_api(elsewhere, "newbie")
    await page.locator("#whoami").click()
    await expect(page).to_have_url(f"{server.url}/account")
    await expect(page.locator("#account-role")).to_have_text("viewer")
    await page.get_by_label("Current password").fill("not it at all")
    await page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    await page.get_by_label("New password again").fill(NEW_PASSWORD)
    await page.get_by_role("button", name="Change password").click()
    await expect(page.locator("#password-error")).to_have_text("the current password is wrong")
    assert await signed_in(elsewhere)
    await page.get_by_label("Current password").fill(PASSWORD)
    await page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    await page.get_by_label("New password again").fill(NEW_PASSWORD)
    await page.get_by_role("button", name="Change password").click()
    await expect(page.locator("#password-done")).to_have_text(
        "Password changed. 1 other session was signed out."
    )
    await screenshot(page, "accounts-account")
    assert await audit(page) == []
    assert not await signed_in(elsewhere)
    assert await signed_in(newcomer)
    assert await accounts.authenticate(server.core.db, "newbie", NEW_PASSWORD) is not None
    assert errors.errors == []


async def test_sign_in_to_chat_comes_back_to_the_channel(
    browser: Browser, server: RunningServer
) -> None:
    """Signed out, a channel page offers "Sign in" in its header and chat; both return to the
    channel, named in the header; a viewer signing in from the front door lands on the home
    page, and the studio tells it that it cannot own channels."""
    owner = await accounts.create_account(server.core.db, "host", PASSWORD, "broadcaster")
    await channels.create_channel(server.core.db, owner, "the-show")
    await make_user(server, "fan", role="viewer")
    errors = PageErrors()
    context = await new_context(browser, server, errors)
    page = await context.new_page()

    await page.goto("/c/the-show")
    header_sign_in = page.locator("#signin")
    await expect(header_sign_in).to_have_attribute("href", "/login?next=%2Fc%2Fthe-show")
    chat_sign_in = page.locator("[data-chat=signin] a")
    await expect(chat_sign_in).to_be_visible()
    await chat_sign_in.click()
    await expect(page).to_have_url(re.compile(r"/login\?next=%2Fc%2Fthe-show$"))
    assert await audit(page) == []
    await page.get_by_label("Username").fill("fan")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(f"{server.url}/c/the-show")
    await expect(page.locator("#whoami")).to_have_text("fan")
    await expect(page.locator("[data-chat=signin]")).to_be_hidden()

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.locator("#signin")).to_be_visible()
    await expect(page).to_have_url(f"{server.url}/c/the-show")
    assert not await signed_in(context)

    await page.goto("/login")
    await page.get_by_label("Username").fill("fan")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(f"{server.url}/")
    await page.goto("/studio")
    await expect(page.get_by_role("heading", name="The studio is for broadcasters")).to_be_visible()
    await expect(page.get_by_role("button", name="Create channel")).to_be_hidden()
    await screenshot(page, "accounts-viewer-studio")
    assert await audit(page) == []
    assert errors.errors == []

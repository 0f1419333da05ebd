"""Chat moderation in Chromium with the keyboard only: Tab reaches a message's buttons, Enter
acts; a timed-out viewer's input is disabled with the time left until the timeout is lifted;
a ban removes the user's recent messages for everyone and is lifted from the list. The host
moderates from the live dashboard, the viewers watch the channel page; both are audited."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, Page, expect

from stagecast.auth.service import get_account
from stagecast.channels import service as channels
from tests.conftest import RunningServer
from tests.e2e.audit import audit
from tests.e2e.conftest import PageErrors, make_user, new_context, screenshot, sign_in_by_api

pytestmark = [pytest.mark.browser]

SLUG = "modroom"
MAX_TABS = 80  # more than the dashboard has controls before its chat


async def _open(
    browser: Browser, server: RunningServer, errors: PageErrors, who: str, path: str
) -> Page:
    context = await new_context(browser, server, errors)
    await sign_in_by_api(context, who)
    page = await context.new_page()
    await page.goto(path)
    try:
        await expect(page.locator("#chat [data-chat=state]")).to_have_text("Live")
    except AssertionError:
        raise AssertionError(f"{path}: {errors.errors}") from None
    return page


async def _say(page: Page, text: str) -> None:
    """Type a message and send it with Enter."""
    await page.get_by_role("textbox", name="Message").fill(text)
    await page.get_by_role("textbox", name="Message").press("Enter")
    await expect(page.locator("#chat .chat-line").filter(has_text=text)).to_have_count(1)


_FOCUSED = """() => {
  const e = document.activeElement, line = e.closest(".chat-line");
  const name = (e.getAttribute("aria-label") || e.textContent || e.tagName).trim();
  if (!line) return name;
  const body = line.querySelector(".chat-body").textContent;
  return e === line ? "line:" + body : body + "/" + name;
}"""


async def _focused(page: Page) -> str:
    """Describe the focused element: "line:TEXT" for a message, "TEXT/NAME" for a button of
    one, the accessible name of anything else."""
    return str(await page.evaluate(_FOCUSED))


async def _tab_to_log(page: Page) -> None:
    """Press Tab from the top of the page until a chat message has the focus."""
    await page.locator("body").focus()
    for _ in range(MAX_TABS):
        await page.keyboard.press("Tab")
        if (await _focused(page)).startswith("line:"):
            return
    raise AssertionError("Tab never reached the chat messages")


async def _tab_to(page: Page, name: str, key: str = "Tab") -> None:
    """Press ``key`` (at most a few times) until the control called ``name`` has the focus."""
    for _ in range(6):
        await page.keyboard.press(key)
        if await _focused(page) == name:
            return
    raise AssertionError(f"{key} did not reach {name!r} (at {await _focused(page)!r})")


async def test_keyboard_moderation_is_reversible(browser: Browser, server: RunningServer) -> None:
    """Delete, time out, lift, ban with removal and lift the ban, all from the keyboard."""
    db = server.core.db
    for who, role in (("host", "broadcaster"), ("troll", "viewer"), ("fan", "viewer")):
        await make_user(server, who, role)
    await channels.create_channel(db, await get_account(db, "host"), SLUG)
    errors = PageErrors()
    host = await _open(browser, server, errors, "host", f"/studio/channels/{SLUG}/live")
    troll = await _open(browser, server, errors, "troll", f"/c/{SLUG}")
    fan = await _open(browser, server, errors, "fan", f"/c/{SLUG}")
    for text in ("spam one", "spam two", "spam three"):
        await _say(troll, text)
    await _say(host, "welcome all")
    lines = host.locator("#chat .chat-line")
    own = lines.filter(has_text="welcome all")
    await expect(lines.filter(has_text="spam three").get_by_role("button")).to_have_count(3)
    await expect(own.get_by_role("button")).to_have_count(0)  # not on the host's own message

    # Tab lands on the newest message; ↑ picks the one before; Tab reaches its Delete.
    await _tab_to_log(host)
    assert await _focused(host) == "line:welcome all"
    await host.keyboard.press("ArrowUp")
    assert await _focused(host) == "line:spam three"
    await _tab_to(host, "spam three/Delete")
    await screenshot(host, "mod-01-keyboard-buttons")
    await host.keyboard.press("Enter")
    for page in (host, troll, fan):
        await expect(page.locator("#chat .chat-line").filter(has_text="spam three")).to_have_count(
            0
        )
    assert await _focused(host) == "line:welcome all"  # the focus is not lost with the line

    # Time the troll out: their input is disabled and counts down.
    await host.keyboard.press("ArrowUp")
    await _tab_to(host, "spam two/Timeout")
    await host.keyboard.press("Enter")
    message_box = troll.get_by_role("textbox", name="Message")
    await expect(message_box).to_be_disabled()
    await expect(troll.locator("#chat [data-chat=timeout]")).to_have_text(
        re.compile(r"Timed out: (10:00|9:5\d) left")
    )
    await expect(troll.get_by_role("button", name="Send")).to_be_disabled()
    assert await audit(troll) == []
    await screenshot(troll, "mod-02-timed-out")

    # Lift it from the list: Tab goes on past the message's buttons to "Bans and timeouts".
    await _tab_to(host, "Bans and timeouts")
    await host.keyboard.press("Enter")
    listed = host.get_by_role("list", name="Bans and timeouts").get_by_role("listitem")
    await expect(listed).to_have_count(1)
    await expect(listed).to_contain_text("troll")
    await expect(listed).to_contain_text("timed out until")
    await _tab_to(host, "End timeout of troll")
    await host.keyboard.press("Enter")
    await expect(message_box).to_be_enabled()
    await expect(troll.locator("#chat [data-chat=notice]")).to_contain_text("you can chat again")
    await expect(listed).to_have_count(0)
    await expect(host.get_by_text("Nobody is banned or timed out.")).to_be_visible()

    # Ban with removal: Shift+Tab back to the message's Ban button, then the dialog.
    await _tab_to(host, "spam two/Ban…", key="Shift+Tab")
    await host.keyboard.press("Enter")
    dialog = host.get_by_role("dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog.get_by_label("Remove this user's recent messages")).to_be_checked()
    await host.keyboard.type("flooding")
    assert await audit(host) == []
    await screenshot(host, "mod-03-ban-dialog")
    await _tab_to(host, "Ban")
    await host.keyboard.press("Enter")
    await expect(dialog).to_be_hidden()
    for page in (host, fan):
        await expect(page.locator("#chat .chat-line")).to_have_text([re.compile("welcome all")])
    await expect(troll.locator("#chat [data-chat=state]")).to_have_text(
        "You cannot join this chat."
    )
    await expect(listed).to_have_count(1)  # the open list follows the change by itself
    await expect(listed).to_contain_text("banned")
    await expect(listed).to_contain_text("flooding")

    # Lift the ban: the troll may join and post again.
    await _tab_to(host, "Lift ban of troll")
    await host.keyboard.press("Enter")
    await expect(listed).to_have_count(0)
    assert await audit(host) == []
    await screenshot(host, "mod-04-lifted")
    await troll.reload()
    await expect(troll.locator("#chat [data-chat=state]")).to_have_text("Live")
    await _say(troll, "sorry")
    await expect(host.locator("#chat .chat-line").filter(has_text="sorry")).to_have_count(1)
    assert errors.errors == []

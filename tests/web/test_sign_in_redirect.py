"""After sign-in, ``/login?next=`` leads only to a path of this site: browser and server."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote, unquote

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from playwright.async_api import Browser, async_playwright, expect

from stagecast.config import Settings
from stagecast.web.pages import safe_next
from tests.conftest import RunningServer, make_settings, serve
from tests.e2e.conftest import CHROMIUM, LAUNCH_ARGS, PageErrors, make_user, new_context
from tests.e2e.conftest import PASSWORD as E2E_PASSWORD

# Each of these resolves (in a browser or after dot segments) to another host.
HOSTILE = [
    "/..//evil.example/phish",
    "/.//evil.example/phish",
    "/%2e%2e//evil.example/phish",
    "/%2E%2E//evil.example/phish",
    "/a/..//evil.example/phish",
    "/a/%2e%2e//evil.example/phish",
    "//evil.example/phish",
    "/\\evil.example/phish",
    "/\\\\evil.example/phish",
    "/./\\evil.example/phish",
    "/..\\/evil.example/phish",
    "/\t/evil.example/phish",
    "/\n/evil.example/phish",
    "https://evil.example/phish",
    "javascript:alert(1)",
    "evil.example/phish",
]
SAFE = {
    "/studio/library?status=failed": "/studio/library?status=failed",
    "/c/show#chat": "/c/show#chat",
    "/studio/./library": "/studio/library",
    "/studio/a/../library": "/studio/library",
}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """SQLite, with room for one sign-in per case."""
    return make_settings(tmp_path / "data", login_attempts=1000)


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[RunningServer]:
    """Stagecast on a real socket."""
    async with serve(settings) as running:
        yield running


def _next_of(page: str) -> str:
    found = re.search(r'data-next="([^"]*)"', page)
    assert found, "the sign-in form carries no data-next"
    return html.unescape(found.group(1))


async def test_the_server_hands_the_page_only_a_path_of_this_site(
    server: RunningServer,
) -> None:
    """The sign-in page replaces a ``next`` that could leave the site with /studio, and keeps
    a path of this site (query and fragment too) with its dot segments resolved."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        for target in [*HOSTILE, *SAFE]:
            response = await client.get(f"/login?next={quote(target, safe='')}")
            assert response.status_code == 200
            assert _next_of(response.text) == SAFE.get(target, "/studio"), target


@given(st.text(alphabet=st.sampled_from("/\\.%2eE:a\t?#@"), max_size=16))
def test_whatever_next_is_the_result_is_a_plain_path(raw: str) -> None:
    """For any ``next``, the result is /studio or one "/" then no slash, backslash or dot segment
    that a browser could turn into another host."""
    result = safe_next(raw)
    path = result.split("?")[0].split("#")[0]
    assert result == "/studio" or (path.startswith("/") and not path.startswith("//"))
    assert "\\" not in result
    assert "\t" not in result
    assert all(unquote(segment) not in (".", "..") for segment in path.split("/"))


@pytest.mark.browser
async def test_signing_in_never_leaves_the_site(server: RunningServer) -> None:
    """In Chromium, each hostile ``next`` ends on /studio of this server after sign-in."""
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium not found at {CHROMIUM}")
    await make_user(server, "returning")
    async with async_playwright() as playwright:
        browser: Browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS
        )
        try:
            errors = PageErrors()
            context = await new_context(browser, server, errors)
            page = await context.new_page()
            for target in [*HOSTILE, *SAFE]:
                await page.goto(f"/login?next={quote(target, safe='')}")
                await page.get_by_label("Username").fill("returning")
                await page.get_by_label("Password").fill(E2E_PASSWORD)
                await page.get_by_role("button", name="Sign in").click()
                expected = SAFE.get(target, "/studio")
                await expect(page).to_have_url(f"{server.url}{expected}")
            # The page checks again, whatever the server handed it.
            await page.goto("/login")
            for target in [*HOSTILE, *SAFE]:
                expected = SAFE.get(target, "/studio")
                assert await page.evaluate("nextPage", target) == f"{server.url}{expected}", target
            assert errors.errors == []
            await context.close()
        finally:
            await browser.close()

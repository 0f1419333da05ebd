"""The front door over HTTP: the home page, channel pages, and HTML error pages for browsers."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from stagecast.channels import service
from tests.auth.test_api import bearer, make_user
from tests.channels.test_listing import _channel, _go_on_air
from tests.vod.conftest import add_vods, set_status

PAGE = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


@pytest.fixture
async def owner(app: FastAPI) -> str:
    """The API token of a broadcaster."""
    return await make_user(app.state.runtime.core, "owner")


async def test_home_is_public_and_lists_live_channels_then_vods(
    client: httpx.AsyncClient, app: FastAPI, owner: str
) -> None:
    """Signed out, / shows the public channel on air (not the private one) and public VODs."""
    db = app.state.runtime.core.db
    await _channel(client, owner, "on-now", "public")
    await _channel(client, owner, "secret-now", "private")
    await _channel(client, owner, "quiet-tv", "public")
    await _go_on_air(db, "on-now")
    await _go_on_air(db, "secret-now")
    [vod_id] = await add_vods(db, await service.get_channel(db, "quiet-tv"), 1, title="Replay")
    await set_status(db, vod_id, "ready")

    home = await client.get("/", headers=PAGE)
    assert home.status_code == 200
    assert 'href="/c/on-now"' in home.text
    assert "/api/v1/channels/on-now/thumbnail.jpg" in home.text
    assert "secret-now" not in home.text
    assert 'href="/c/quiet-tv"' not in home.text.split('id="vods-heading"')[0]
    assert f'href="/v/{vod_id}"' in home.text
    assert "Replay 0" in home.text


async def test_offline_channel_page_shows_next_info_and_recent_vods(
    client: httpx.AsyncClient, app: FastAPI, owner: str
) -> None:
    """An offline channel's page is the slate: the owner's next info, links to its VODs."""
    db = app.state.runtime.core.db
    await _channel(client, owner, "slate-tv", "public")
    await client.patch(
        "/api/v1/channels/slate-tv",
        json={"next_info": "Back <Friday> at 20:00"},
        headers=bearer(owner),
    )
    [vod_id] = await add_vods(db, await service.get_channel(db, "slate-tv"), 1, title="Last")
    await set_status(db, vod_id, "ready")
    page = await client.get("/c/slate-tv", headers=PAGE)
    assert page.status_code == 200
    assert "is offline" in page.text
    assert "Back &lt;Friday&gt; at 20:00" in page.text  # escaped, as every text
    assert f'href="/v/{vod_id}"' in page.text


async def test_unknown_or_hidden_channel_is_a_404_page(
    client: httpx.AsyncClient, owner: str
) -> None:
    """An unknown channel and a private one are the same 404 page, not an empty player."""
    await _channel(client, owner, "hush-tv", "private")
    for slug in ("nobody-here", "hush-tv", "UPPER"):
        page = await client.get(f"/c/{slug}", headers=PAGE)
        assert page.status_code == 404, slug
        assert page.headers["content-type"].startswith("text/html")
        assert "Page not found" in page.text
        assert 'id="player"' not in page.text


async def test_browsers_get_error_pages_and_api_clients_json(client: httpx.AsyncClient) -> None:
    """/v/999 and an unknown path are HTML pages for a browser, JSON for everyone else."""
    for path in ("/v/999", "/no/such/page"):
        page = await client.get(path, headers=PAGE)
        assert page.status_code == 404
        assert page.headers["content-type"].startswith("text/html")
        assert "Go to the home page" in page.text
        plain = await client.get(path)
        assert plain.status_code == 404
        assert plain.json()["error"]["code"] == "not_found"
    api = await client.get("/api/v1/vods/999/chat", headers=PAGE)
    assert api.headers["content-type"].startswith("application/json")


async def test_favicon_is_served(client: httpx.AsyncClient) -> None:
    """/favicon.ico leads to the SVG icon the pages link."""
    icon = await client.get("/favicon.ico", follow_redirects=True)
    assert icon.status_code == 200
    assert icon.headers["content-type"].startswith("image/svg+xml")

"""One tenant cannot take the feeds of the others: caps per account and per address."""

from __future__ import annotations

import contextlib
from pathlib import Path

import httpx

from stagecast.channels import service as channels
from stagecast.config import Settings
from tests.conftest import serve
from tests.studio.conftest import owned_channel, person, sse, studio_settings


def _studio(slug: str) -> str:
    return f"/api/v1/studio/channels/{slug}/events"


def _viewer(slug: str) -> str:
    return f"/api/v1/channels/{slug}/events"


async def _refusal(
    client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    """Open ``url`` as a stream; return its status and error message ("" for a feed)."""
    async with client.stream("GET", url, headers=headers or {}) as response:
        if response.status_code == 200:
            return 200, ""
        return response.status_code, (await response.aread()).decode()


def _from(url: str, address: str) -> httpx.AsyncClient:
    """A client whose connections come from ``address`` (any 127.x.y.z is this host)."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(base_url=url, transport=transport, timeout=10)


async def test_one_account_cannot_fill_the_process_with_studio_feeds(tmp_path: Path) -> None:
    """Feeds on many channels of one broadcaster stop at the account cap (429 saying so);
    another broadcaster still opens theirs."""
    settings = studio_settings(
        tmp_path / "data",
        metrics_feed_channel_limit=16,
        metrics_feed_account_limit=3,
        metrics_feed_process_limit=10,
    )
    async with serve(settings) as server, httpx.AsyncClient(base_url=server.url) as http:
        db = server.core.db
        owner, first = await owned_channel(db)
        second = (await owned_channel(db))[1]
        other, theirs = await owned_channel(db)
        more, _ = await channels.create_channel(db, owner.account, "more-" + second.slug)
        async with contextlib.AsyncExitStack() as stack:
            for slug in (first.slug, first.slug, more.slug):
                await stack.enter_async_context(sse(http, _studio(slug), owner.headers))
            status, message = await _refusal(http, _studio(more.slug), owner.headers)
            assert status == 429
            assert "this account" in message
            async with sse(http, _studio(theirs.slug), other.headers) as feed:
                assert (await feed.next()).event == "retry"
        async with sse(http, _studio(more.slug), owner.headers) as feed:  # freed on close
            assert (await feed.next()).event == "retry"


async def test_one_address_cannot_hold_a_channels_viewer_feeds(tmp_path: Path) -> None:
    """Viewer feeds from one address stop at the address cap; another address still watches."""
    settings = studio_settings(tmp_path / "data", viewer_feed_address_limit=3)
    async with serve(settings) as server:
        _, channel = await owned_channel(server.core.db)
        async with (
            _from(server.url, "127.0.0.1") as greedy,
            _from(server.url, "127.0.0.2") as viewer,
            contextlib.AsyncExitStack() as stack,
        ):
            for _ in range(3):
                await stack.enter_async_context(sse(greedy, _viewer(channel.slug)))
            status, message = await _refusal(greedy, _viewer(channel.slug))
            assert status == 429
            assert "this address" in message
            async with sse(viewer, _viewer(channel.slug)) as feed:
                assert (await feed.next()).event == "retry"


async def test_a_user_may_own_only_so_many_channels(tmp_path: Path, settings: Settings) -> None:
    """Past ``channels_per_user`` a broadcaster's next channel is refused with a message;
    admins are not limited (each database back end)."""
    limited = studio_settings(tmp_path / "data", settings.database_url, channels_per_user=2)
    async with serve(limited) as server, httpx.AsyncClient(base_url=server.url) as http:
        owner = await person(server.core.db)
        admin = await person(server.core.db, role="admin")
        for slug in ("one-show", "two-show"):
            made = await http.post("/api/v1/channels", json={"slug": slug}, headers=owner.headers)
            assert made.status_code == 201, made.text
        third = await http.post("/api/v1/channels", json={"slug": "three"}, headers=owner.headers)
        assert third.status_code == 403, third.text
        assert "2 channels" in third.json()["error"]["message"]
        for slug in ("adm-one", "adm-two", "adm-three"):
            made = await http.post("/api/v1/channels", json={"slug": slug}, headers=admin.headers)
            assert made.status_code == 201, made.text

"""The fast media path: playlists rendered once per change (ETag, 304), hot media from memory.

A real server on a real socket takes segments over HTTP push (ffmpeg's CMAF) and serves them;
the bound on media held in memory is checked on a session fed more than fits.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from stagecast.auth import service as accounts
from stagecast.bus import MemoryBus
from stagecast.channels import service as channels
from stagecast.channels import tokens
from stagecast.config import Settings
from stagecast.db import Database
from stagecast.live import service
from stagecast.live.delivery import sign_viewer
from stagecast.live.hooks import SessionHooks, ViewEvent
from stagecast.live.hot import HotMedia, MediaKey
from stagecast.live.playlists import Rendered
from stagecast.live.session import LiveDeps, LiveSession
from stagecast.live.storage import LocalStorage, media_path
from tests.conftest import RunningServer, serve
from tests.live.streaming import parse_live

VIEWER = "viewer-0001"
CMAF = tuple[bytes, list[bytes]]


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[RunningServer]:
    """A running Stagecast whose live window is three 2 s segments."""
    settings.live_window_segments = 3
    async with serve(settings) as running:
        yield running


@pytest.fixture
async def http(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    """A viewer's (and the pusher's) HTTP client."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        yield client


@dataclass
class Pushed:
    """A channel live over HTTP push, and the URLs of its session."""

    channel_id: int
    session: LiveSession
    master_url: str
    media_url: str  # the source rendition's playlist
    base: str  # where its media files are
    auth: dict[str, str]  # the pusher's headers


async def push_live(
    server: RunningServer,
    http: httpx.AsyncClient,
    slug: str,
    media: CMAF,
    count: int,
    *,
    visibility: str = "public",
) -> Pushed:
    """Create ``slug``, push its init and ``count`` segments; return the live session."""
    db = server.core.db
    owner = await accounts.create_account(db, f"o-{slug}", "password123", "broadcaster")
    created, key = await channels.create_channel(db, owner, slug, visibility=visibility)
    auth = {"Authorization": f"Bearer {key}"}
    init, segments = media
    put = await http.put(f"/ingest/{slug}/source/init.mp4", content=init, headers=auth)
    assert put.status_code == 204, put.text
    for number, data in enumerate(segments[:count]):
        put = await http.put(f"/ingest/{slug}/source/seg-{number}.m4s", content=data, headers=auth)
        assert put.status_code == 204, put.text
    session = server.runtime.live.manager.local(created.id)
    assert session is not None
    base = f"/hls/{slug}/s{session.id}/source"
    master_url = f"/hls/{slug}/master.m3u8"
    return Pushed(created.id, session, master_url, f"{base}/index.m3u8", base, auth)


async def until_ok(http: httpx.AsyncClient, url: str, **params: str) -> httpx.Response:
    """GET ``url`` until it answers 200 (the channel lookup is cached for a second)."""
    async with asyncio.timeout(10):
        while True:
            response = await http.get(url, params=params)
            if response.status_code == 200:
                return response
            await asyncio.sleep(0.1)


def counting(calls: list[str], name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``function`` so each call is noted in ``calls`` (the real function still runs)."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        return function(*args, **kwargs)

    return wrapper


async def test_a_media_playlist_answers_304_until_it_changes(
    server: RunningServer, http: httpx.AsyncClient, cmaf: CMAF
) -> None:
    """The media playlist carries a strong ETag; If-None-Match with it is a bodiless 304 until
    the next segment is listed, and then a 200 with a new ETag."""
    pushed = await push_live(server, http, "etag", cmaf, 2)
    first = await until_ok(http, pushed.media_url)
    etag = first.headers["etag"]
    assert etag.startswith('"')
    assert etag.endswith('"')
    # A CDN may keep it half a segment; a browser revalidates it at every reload.
    assert first.headers["cache-control"] == "public, max-age=0, s-maxage=1"
    again = await http.get(pushed.media_url, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert "s-maxage=1" in again.headers["cache-control"]
    listed = await http.get(pushed.media_url, headers={"If-None-Match": f'"other", W/{etag}'})
    assert listed.status_code == 304  # any listed tag, weak comparison (RFC 9110 13.1.2)

    put = await http.put("/ingest/etag/source/seg-2.m4s", content=cmaf[1][2], headers=pushed.auth)
    assert put.status_code == 204
    changed = await http.get(pushed.media_url, headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert changed.text.count("#EXTINF") == 3


async def test_a_public_media_playlist_costs_no_rendering_per_request(
    server: RunningServer, http: httpx.AsyncClient, cmaf: CMAF, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests for a public channel's media playlist send the bytes rendered at the last
    change: no rendering, no rewrite, whatever ``vs`` the player sends."""
    pushed = await push_live(server, http, "cheap", cmaf, 2)
    rendered = await until_ok(http, pushed.media_url)
    calls: list[str] = []
    monkeypatch.setattr(tokens, "carry", counting(calls, "carry", tokens.carry))
    monkeypatch.setattr(Rendered, "of", classmethod(counting(calls, "render", Rendered.of)))
    for number in range(10):
        response = await http.get(pushed.media_url, params={"vs": f"viewer-{number:04d}"})
        assert response.status_code == 200
        assert response.content == rendered.content
    assert calls == []


async def test_the_master_answers_304_per_viewer_and_variants_carry_vs_but_segments_do_not(
    server: RunningServer, http: httpx.AsyncClient, cmaf: CMAF
) -> None:
    """The master's ETag covers the viewer's ``vs`` (304 for the same viewer, 200 for another);
    the variant URI carries ``vs``, and the variant playlist's URIs carry no query at all."""
    pushed = await push_live(server, http, "master", cmaf, 2)
    master = await until_ok(http, pushed.master_url, vs=VIEWER)
    etag = master.headers["etag"]
    assert master.headers["cache-control"] == "private, no-cache"  # it carries this viewer's own vs
    same = await http.get(pushed.master_url, params={"vs": VIEWER}, headers={"If-None-Match": etag})
    assert same.status_code == 304
    assert same.content == b""
    other = await http.get(
        pushed.master_url, params={"vs": "viewer-0002"}, headers={"If-None-Match": etag}
    )
    assert other.status_code == 200
    assert other.headers["etag"] != etag

    variant = parse_live(master.text).playlists[0].uri
    signed = parse_qs(urlsplit(variant).query)["vs"][0]
    assert signed.startswith(VIEWER + ".")  # the page's id, signed by the server
    media = await http.get(f"/hls/master/{variant}")
    assert media.status_code == 200
    uris = [line for line in media.text.splitlines() if line and not line.startswith("#")]
    assert len(uris) == 2
    assert all("?" not in uri for uri in uris), uris
    assert '#EXT-X-MAP:URI="init-0.mp4"' in media.text


async def test_viewers_are_counted_on_every_playlist_request_even_a_304(
    server: RunningServer, http: httpx.AsyncClient, cmaf: CMAF
) -> None:
    """A media playlist request with a ``vs`` the master signed reaches the view observers,
    also when it is a 304."""
    seen: list[ViewEvent] = []
    server.runtime.live.hooks.on_view.append(seen.append)
    pushed = await push_live(server, http, "counted", cmaf, 2)
    vs = sign_viewer(server.core.secret_key, pushed.channel_id, VIEWER)
    first = await until_ok(http, pushed.media_url, vs=vs)
    cached = await http.get(
        pushed.media_url, params={"vs": vs}, headers={"If-None-Match": first.headers["etag"]}
    )
    assert cached.status_code == 304
    ours = [e for e in seen if e.session_id == pushed.session.id]
    assert [e.viewer_id for e in ours[-2:]] == [VIEWER, VIEWER]
    assert ours[-1].channel_id == pushed.channel_id


async def test_hot_segments_and_inits_come_from_memory_and_equal_the_files(
    server: RunningServer, http: httpx.AsyncClient, cmaf: CMAF
) -> None:
    """A listed segment and its init are the bytes on disk, and are still served (from memory)
    once the files are gone; a segment that left the window is served from storage."""
    pushed = await push_live(server, http, "hot", cmaf, 5)
    playlist = parse_live((await until_ok(http, pushed.media_url)).text)
    assert [s.uri for s in playlist.segments] == [f"seg-{n:08d}.m4s" for n in (2, 3, 4)]
    storage = server.runtime.live.storage
    session = pushed.session
    for filename in ("init-0.mp4", "seg-00000004.m4s"):
        path = storage.resolve(media_path(pushed.channel_id, session.id, "source", filename))
        on_disk = path.read_bytes()
        served = await http.get(f"{pushed.base}/{filename}")
        assert served.status_code == 200
        assert served.content == on_disk
        assert "immutable" in served.headers["cache-control"]
        path.unlink()  # storage can no longer answer: what follows comes from memory
        again = await http.get(f"{pushed.base}/{filename}")
        assert again.status_code == 200
        assert again.content == on_disk

    left = await http.get(f"{pushed.base}/seg-00000000.m4s")  # out of the window: storage
    assert left.status_code == 200
    assert left.content == cmaf[1][0]
    assert session.media_data("source", "seg-00000000.m4s") is None
    assert left.headers["cache-control"] == "public, max-age=31536000, immutable"


async def test_a_private_channel_keeps_its_token_in_every_uri(
    server: RunningServer, http: httpx.AsyncClient, cmaf: CMAF
) -> None:
    """Private: master and media playlists carry the token into every URI (EXT-X-MAP too), the
    ETag covers the token, and media from memory still needs the token."""
    pushed = await push_live(server, http, "private", cmaf, 2, visibility="private")
    token = tokens.issue(server.core.secret_key, tokens.channel_target(pushed.channel_id))
    master = await until_ok(http, pushed.master_url, token=token, vs=VIEWER)
    variant = parse_live(master.text).playlists[0].uri
    signed = sign_viewer(server.core.secret_key, pushed.channel_id, VIEWER)
    assert parse_qs(urlsplit(variant).query) == {"token": [token], "vs": [signed]}

    media = await http.get(f"/hls/private/{variant}")
    assert media.status_code == 200
    uris = [line for line in media.text.splitlines() if line and not line.startswith("#")]
    assert len(uris) == 2
    assert all(parse_qs(urlsplit(uri).query) == {"token": [token]} for uri in uris), uris
    assert f'#EXT-X-MAP:URI="init-0.mp4?token={token}"' in media.text
    etag = media.headers["etag"]
    cached = await http.get(
        pushed.media_url, params={"token": token}, headers={"If-None-Match": etag}
    )
    assert cached.status_code == 304
    second = tokens.issue(server.core.secret_key, tokens.channel_target(pushed.channel_id), 60)
    other = await http.get(
        pushed.media_url, params={"token": second}, headers={"If-None-Match": etag}
    )
    assert other.status_code == 200
    assert token not in other.text
    assert second in other.text

    segment = uris[-1]
    assert (await http.get(f"{pushed.base}/{segment.split('?')[0]}")).status_code == 404
    served = await http.get(f"{pushed.base}/{segment}")
    assert served.status_code == 200
    assert served.content == cmaf[1][1]
    assert served.headers["cache-control"].startswith("private,")


async def _open(db: Database, root: Path, hot: HotMedia[MediaKey], window: int) -> LiveSession:
    owner = await accounts.create_account(db, "caster", "password123", "broadcaster")
    created, _ = await channels.create_channel(db, owner, "bounded")
    row = await service.open_session(
        db, channel_id=created.id, title="t", profile="passthrough", key_version=1, node="n"
    )
    deps = LiveDeps(db, LocalStorage(root), SessionHooks(), MemoryBus(), window, 2.0, hot)
    return LiveSession(deps, row, slug="bounded", dvr_seconds=0, epoch=0, next_sequences={})


async def test_hot_media_stays_under_its_byte_bound(
    db: Database, tmp_path: Path, cmaf: CMAF
) -> None:
    """Fed more segments than fit, memory holds under the bound: the newest, oldest out first;
    what was evicted is still listed and its file is on disk."""
    init, segments = cmaf
    sizes = [len(s) for s in segments]
    bound = sizes[3] + sizes[4] + min(sizes) // 2  # room for the last two, not three
    hot = HotMedia(bound)
    session = await _open(db, tmp_path / "media", hot, window=6)
    await session.add_init("source", init)
    for data in segments:
        assert await session.add_segment("source", data)
        assert hot.bytes_held <= bound
    assert len(session.renditions["source"].playlist.segments) == 5  # all still listed
    held = [n for n in range(5) if session.media_data("source", f"seg-{n:08d}.m4s") is not None]
    assert held == [3, 4]
    assert hot.bytes_held == sizes[3] + sizes[4]
    assert session.media_data("source", "seg-00000004.m4s") == segments[4]
    await session.close_playlists()
    assert hot.bytes_held == 0
    assert len(hot) == 0


async def test_hot_media_forgets_what_left_the_window(
    db: Database, tmp_path: Path, cmaf: CMAF
) -> None:
    """With room to spare, memory holds exactly the listed segments: those that leave the
    playlist window leave memory too; a bound of 0 holds nothing."""
    init, segments = cmaf
    hot = HotMedia(1 << 30)
    session = await _open(db, tmp_path / "media", hot, window=3)
    await session.add_init("source", init)
    for data in segments:
        assert await session.add_segment("source", data)
        listed = [e.uri for e in session.renditions["source"].playlist.segments]
        assert [u for u in listed if session.media_data("source", u) is not None] == listed
        assert len(hot) == len(listed)
        assert hot.bytes_held == sum(len(segments[int(u[4:12])]) for u in listed)
    assert len(hot) == 3
    await session.close_playlists()

    nothing = HotMedia(0)
    nothing.put((1, "source", "seg-00000000.m4s"), segments[0])
    assert len(nothing) == 0
    assert nothing.bytes_held == 0


async def test_a_zero_hot_media_bound_serves_every_segment_from_storage(
    settings: Settings, cmaf: CMAF
) -> None:
    """``STAGECAST_HOT_MEDIA_BYTES=0`` reaches the sessions: a listed segment whose file is gone
    is 404, because nothing is held in memory."""
    settings.hot_media_bytes = 0
    async with serve(settings) as server, httpx.AsyncClient(base_url=server.url) as http:
        pushed = await push_live(server, http, "cold", cmaf, 2)
        await until_ok(http, pushed.media_url)
        storage = server.runtime.live.storage
        path = storage.resolve(
            media_path(pushed.channel_id, pushed.session.id, "source", "seg-00000001.m4s")
        )
        assert (await http.get(f"{pushed.base}/seg-00000001.m4s")).status_code == 200
        path.unlink()
        assert (await http.get(f"{pushed.base}/seg-00000001.m4s")).status_code == 404
        assert server.runtime.live.manager.deps.hot.bytes_held == 0


async def test_made_up_viewer_ids_are_not_counted(
    server: RunningServer, http: httpx.AsyncClient, cmaf: CMAF
) -> None:
    """Playlist requests with random ``vs`` (or a signature for another channel) count no one;
    one address gets at most 30 new signed ids a minute from the master, then plays uncounted."""
    seen: list[ViewEvent] = []
    server.runtime.live.hooks.on_view.append(seen.append)
    pushed = await push_live(server, http, "inflate", cmaf, 2)
    await until_ok(http, pushed.media_url)
    for number in range(200):
        made_up = f"viewer-{number:06d}"
        assert (await http.get(pushed.media_url, params={"vs": made_up})).status_code == 200
    forged = sign_viewer(server.core.secret_key, pushed.channel_id + 1, "viewer-forged")
    assert (await http.get(pushed.media_url, params={"vs": forged})).status_code == 200
    assert (await http.get(pushed.media_url, params={"vs": "x" * 500})).status_code == 400
    assert [e for e in seen if e.session_id == pushed.session.id] == []
    carried = []
    for _ in range(35):
        master = await http.get(pushed.master_url)
        assert master.status_code == 200
        carried.append("vs=" in master.text)
    assert carried.count(True) == 30  # the rest play, uncounted

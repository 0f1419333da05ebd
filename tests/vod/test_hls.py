"""VOD playback over HTTP: HLS types and caching, real decoding, tokens, the watch page."""

from __future__ import annotations

import io
from urllib.parse import urljoin

import av
import m3u8
import pytest

from stagecast.channels import tokens
from tests.auth.test_api import bearer, make_user
from tests.vod.conftest import Watched
from tests.vod.media import RENDITIONS, Media

PLAYLIST = "application/vnd.apple.mpegurl"


def _decode(data: bytes) -> tuple[int, int, int]:
    """Decode fMP4 bytes; return (video frames, width, height)."""
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        frames = len(list(container.decode(stream)))
        return frames, stream.codec_context.width, stream.codec_context.height


async def test_every_segment_is_served_typed_cached_and_decodable(
    watched: Watched, media: Media
) -> None:
    """Master, playlists, init and media segments come back right and decode with PyAV."""
    client = watched.client
    response = await client.get(watched.master)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(PLAYLIST)
    assert response.headers["cache-control"] == "public, max-age=10"
    master = m3u8.loads(response.text)
    sizes = {name: (w, h) for name, w, h in RENDITIONS}
    for variant in master.playlists:
        url = urljoin(f"http://testserver{watched.master}", variant.uri)
        playlist = await client.get(url)
        assert playlist.headers["content-type"].startswith(PLAYLIST)
        parsed = m3u8.loads(playlist.text)
        name = variant.uri.split("/")[0]
        assert len(parsed.segments) == media.segment_count(name)
        inits: dict[str, bytes] = {}
        for seg in parsed.segments:
            init_url = urljoin(url, seg.init_section.uri)
            if init_url not in inits:
                init = await client.get(init_url)
                assert init.headers["content-type"] == "video/mp4"
                inits[init_url] = init.content
            got = await client.get(urljoin(url, seg.uri))
            assert got.status_code == 200
            assert got.headers["content-type"] == "video/iso.segment"
            assert got.headers["cache-control"] == "public, max-age=31536000, immutable"
            frames, width, height = _decode(inits[init_url] + got.content)
            assert frames > 0
            assert (width, height) == sizes[name]
        assert len(inits) == 2  # one init per epoch


async def test_the_thumbnail_and_the_watch_page(watched: Watched) -> None:
    """The thumbnail is a JPEG; the page embeds the shared player on the master playlist."""
    thumb = await watched.client.get(f"/hls/vods/{watched.vod_id}/thumbnail.jpg")
    assert thumb.headers["content-type"] == "image/jpeg"
    assert thumb.content[:3] == b"\xff\xd8\xff"
    page = await watched.client.get(f"/v/{watched.vod_id}")
    assert page.status_code == 200
    assert "Demo · " in page.text
    assert f'data-src="{watched.master}"' in page.text
    assert "/static/js/player.js" in page.text
    assert (await watched.client.get("/static/js/vod.js")).status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "high/../../x.m4s",
        "high/seg-99999999.m4s",
        "nope/vod.m3u8",
        "high/index.m3u8",
        "high/.hidden.m4s",
        "high/seg-00000000.m4s.tmp",
    ],
)
async def test_unknown_or_unsafe_files_are_404(watched: Watched, path: str) -> None:
    """Only the VOD's own playlists and media under its own directory are served."""
    response = await watched.client.get(f"/hls/vods/{watched.vod_id}/{path}")
    assert response.status_code == 404


async def test_a_private_vod_plays_only_with_a_token_for_that_vod(watched: Watched) -> None:
    """Private: staff or a playback token bound to this VOD; the token reaches every URI."""
    client, url = watched.client, f"/api/v1/studio/vods/{watched.vod_id}"
    assert (
        await client.patch(url, json={"visibility": "private"}, headers=watched.owner)
    ).is_success
    secret = watched.core.secret_key
    assert (await client.get(watched.master)).status_code == 404
    assert (await client.get(f"/v/{watched.vod_id}")).status_code == 404
    for wrong in (
        tokens.issue(secret, f"vod:{watched.vod_id + 1}"),
        tokens.issue(secret, "channel:1"),
        tokens.issue(secret, f"vod:{watched.vod_id}", ttl=-10),
        "forged.token",
        "a.\u00e9",
    ):
        assert (await client.get(watched.master, params={"token": wrong})).status_code == 404
    issued = await client.post(f"{url}/playback-tokens", json={"hours": 1}, headers=watched.owner)
    assert issued.status_code == 201
    token = issued.json()["token"]
    master = await client.get(watched.master, params={"token": token})
    assert master.status_code == 200
    assert master.headers["cache-control"] == "private, max-age=10"
    variant = m3u8.loads(master.text).playlists[0].uri
    assert variant.endswith(f"?token={token}")
    playlist = await client.get(f"/hls/vods/{watched.vod_id}/{variant}")
    parsed = m3u8.loads(playlist.text)
    assert all(s.uri.endswith(f"?token={token}") for s in parsed.segments)
    assert all(s.init_section.uri.endswith(f"?token={token}") for s in parsed.segments)
    segment = parsed.segments[0].uri
    rendition = variant.split("/")[0]
    media_url = f"/hls/vods/{watched.vod_id}/{rendition}/{segment}"
    assert (await client.get(media_url)).headers["cache-control"].startswith("private")
    assert (await client.get(media_url.split("?")[0])).status_code == 404
    page = await client.get(f"/v/{watched.vod_id}", params={"token": token})
    assert f"master.m3u8?token={token}" in page.text
    # Staff need no token; other signed-in people do.
    assert (await client.get(watched.master, headers=watched.owner)).status_code == 200
    viewer = bearer(await make_user(watched.core, "vic", role="viewer"))
    assert (await client.get(watched.master, headers=viewer)).status_code == 404
    moderator = await make_user(watched.core, "mod", role="viewer")
    granted = await client.put(
        "/api/v1/channels/alice-tv/moderators/mod", json={}, headers=watched.owner
    )
    assert granted.status_code == 200
    assert (await client.get(watched.master, headers=bearer(moderator))).status_code == 200


async def test_an_unlisted_vod_plays_by_its_shared_link_only(watched: Watched) -> None:
    """Unlisted: ids count up, so the id alone opens nothing; the studio's link (id + link key)
    does, for every URI, and stops when the VOD turns private; a key never opens another VOD."""
    client, url = watched.client, f"/api/v1/studio/vods/{watched.vod_id}"
    changed = await client.patch(url, json={"visibility": "unlisted"}, headers=watched.owner)
    assert changed.status_code == 200
    shown = changed.json()
    key = tokens.link_key(watched.core.secret_key, f"vod:{watched.vod_id}")
    assert shown["page_url"] == f"/v/{watched.vod_id}?token={key}"
    assert shown["playback_url"] == f"{watched.master}?token={key}"
    assert shown["thumbnail_url"] == f"/hls/vods/{watched.vod_id}/thumbnail.jpg?token={key}"
    listed = (await client.get("/api/v1/studio/vods", headers=watched.owner)).json()["items"]
    assert listed[0]["page_url"] == shown["page_url"]

    # Without the key (or with another VOD's, or a forged one): 404, as if it did not exist.
    assert (await client.get(f"/v/{watched.vod_id}")).status_code == 404
    assert (await client.get(watched.master)).status_code == 404
    viewer = bearer(await make_user(watched.core, "vic", role="viewer"))
    assert (await client.get(watched.master, headers=viewer)).status_code == 404
    secret = watched.core.secret_key
    for wrong in (tokens.link_key(secret, f"vod:{watched.vod_id + 1}"), key[:-2] + "xx"):
        assert (await client.get(watched.master, params={"token": wrong})).status_code == 404

    # With it: the page, the thumbnail and the whole playlist tree, the key carried along.
    page = await client.get(shown["page_url"])
    assert page.status_code == 200
    assert f"master.m3u8?token={key}" in page.text
    assert (await client.get(shown["thumbnail_url"])).status_code == 200
    master = await client.get(shown["playback_url"])
    assert master.status_code == 200
    variant = m3u8.loads(master.text).playlists[0].uri
    assert variant.endswith(f"?token={key}")
    playlist = m3u8.loads((await client.get(f"/hls/vods/{watched.vod_id}/{variant}")).text)
    rendition = variant.split("/")[0]
    segment = await client.get(f"/hls/vods/{watched.vod_id}/{rendition}/{playlist.segments[0].uri}")
    assert segment.status_code == 200
    # The owner needs no key.
    assert (await client.get(watched.master, headers=watched.owner)).status_code == 200

    # Private now: the shared link stops working (a link key is not a playback token).
    await client.patch(url, json={"visibility": "private"}, headers=watched.owner)
    assert (await client.get(shown["playback_url"])).status_code == 404
    private = (await client.get(url, headers=watched.owner)).json()
    assert "token=" not in private["page_url"]
    # Public: the bare id plays again.
    await client.patch(url, json={"visibility": "public"}, headers=watched.owner)
    assert (await client.get(watched.master)).status_code == 200


async def test_a_deleted_vod_stops_playing_at_once(watched: Watched) -> None:
    """After DELETE the master, the segments and the page are 404 immediately."""
    listed = await watched.client.get(watched.master)
    variant = m3u8.loads(listed.text).playlists[0].uri
    deleted = await watched.client.delete(
        f"/api/v1/studio/vods/{watched.vod_id}", headers=watched.owner
    )
    assert deleted.status_code == 204
    for url in (watched.master, f"/hls/vods/{watched.vod_id}/{variant}", f"/v/{watched.vod_id}"):
        assert (await watched.client.get(url)).status_code == 404

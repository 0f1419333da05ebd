"""Who may watch a live channel, what one lookup costs, and how tokens ride along in playlists."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event

from stagecast.auth import service as accounts
from stagecast.channels import service as channels
from stagecast.channels import tokens
from stagecast.channels.policy import Grant
from stagecast.core import Core
from tests.auth.test_api import bearer, make_user


async def test_an_unknown_slug_is_looked_up_once_a_second(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Twenty requests for a channel that does not exist read the database once, not twenty."""
    reads: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        values = parameters.values() if isinstance(parameters, dict) else parameters or ()
        if "no-such-channel" in values:  # other loops of the app read other things meanwhile
            reads.append(statement)

    engine = app.state.runtime.core.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        for _ in range(20):
            assert (await client.get("/hls/no-such-channel/master.m3u8")).status_code == 404
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(reads) == 1, reads


@dataclass
class Hidden:
    """Owner "olga" and her private channel "hidden"."""

    core: Core
    channel_id: int
    owner: dict[str, str]  # her request headers


@pytest.fixture
async def hidden(app: FastAPI) -> Hidden:
    """Create olga and her private channel on the app."""
    core: Core = app.state.runtime.core
    token = await make_user(core, "olga")
    owner = await accounts.get_account(core.db, "olga")
    found, _ = await channels.create_channel(core.db, owner, "hidden", visibility="private")
    return Hidden(core, found.id, bearer(token))


async def test_a_private_channel_opens_to_its_token_and_its_staff_only(
    hidden: Hidden, client: httpx.AsyncClient
) -> None:
    """Private: a token for this channel, the owner, a moderator or an admin; nobody else."""
    core, channel_id, owner = hidden.core, hidden.channel_id, hidden.owner
    url = "/api/v1/channels/hidden/live"
    secret = core.secret_key
    good = tokens.issue(secret, tokens.channel_target(channel_id))
    for wrong in (
        None,
        tokens.issue(secret, tokens.channel_target(channel_id + 1)),
        tokens.issue(secret, tokens.channel_target(channel_id), ttl=-1),
        tokens.link_key(secret, tokens.channel_target(channel_id)),
        "a.\u00e9",
    ):
        assert (await client.get(url, params={"token": wrong})).status_code == 404, wrong
    shown = await client.get(url, params={"token": good})
    assert shown.status_code == 200
    assert shown.json()["playback_token"] == good
    assert (await client.get(url, headers=owner)).status_code == 200
    viewer = bearer(await make_user(core, "vic", role="viewer"))
    assert (await client.get(url, headers=viewer)).status_code == 404
    moderator = await make_user(core, "mod", role="viewer")
    olga = await accounts.get_account(core.db, "olga")
    await channels.set_moderator(core.db, channel_id, "mod", Grant(), olga.id)
    assert (await client.get(url, headers=bearer(moderator))).status_code == 200
    admin = bearer(await make_user(core, "ada", role="admin"))
    assert (await client.get(url, headers=admin)).status_code == 200


async def test_a_channel_playback_link_names_its_page_and_its_playlist(
    hidden: Hidden, client: httpx.AsyncClient
) -> None:
    """The owner's link carries one token for the watch page and the master playlist."""
    url = "/api/v1/channels/hidden/playback-tokens"
    made = await client.post(url, json={"hours": 2}, headers=hidden.owner)
    assert made.status_code == 201
    body = made.json()
    token = body["token"]
    assert body["expires_in"] == 7200
    assert body["watch_url"] == f"/c/hidden?token={token}"
    assert body["playback_url"] == f"/hls/hidden/master.m3u8?token={token}"
    target = tokens.channel_target(hidden.channel_id)
    assert tokens.allows(hidden.core.secret_key, token, target)
    refused = await client.post(url, json={"hours": 2, "days": 1}, headers=hidden.owner)
    assert refused.status_code == 422  # unknown fields are refused, as for VOD links


LL_HLS = """#EXTM3U
#EXT-X-VERSION:9
#EXT-X-MAP:URI="init-0.mp4"
#EXTINF:2.000,
seg-00000001.m4s
#EXT-X-PART:DURATION=0.5,URI="part-00000002.0.m4s",INDEPENDENT=YES
#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part-00000002.1.m4s"
#EXT-X-RENDITION-REPORT:URI="../720p/index.m3u8?_HLS_msn=2",LAST-MSN=2
"""


def test_the_token_reaches_every_uri_of_a_playlist() -> None:
    """Segment lines and every URI attribute (map, parts, hints, reports) get the query."""
    text = tokens.carry(LL_HLS, {"token": "t.k", "vs": "viewer-1", "empty": None})
    query = "token=t.k&vs=viewer-1"
    assert f"seg-00000001.m4s?{query}\n" in text
    assert f'#EXT-X-MAP:URI="init-0.mp4?{query}"' in text
    assert f'URI="part-00000002.0.m4s?{query}",INDEPENDENT=YES' in text
    assert f'URI="part-00000002.1.m4s?{query}"' in text
    assert f'URI="../720p/index.m3u8?_HLS_msn=2&{query}"' in text  # a query of its own kept
    assert text.count("token=") == 5
    assert tokens.carry(LL_HLS, {"token": None}) == LL_HLS

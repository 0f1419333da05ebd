"""The studio library and public lists over HTTP: keyset pages, filters, scoping, totals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from stagecast.channels import service as channels
from stagecast.config import Settings
from stagecast.core import Core
from stagecast.vod.models import STATUSES, vod
from tests.auth.test_api import bearer, make_user
from tests.vod.conftest import add_vods, scalar, set_status

LIST = "/api/v1/studio/vods"


@dataclass
class Studio:
    """Accounts and channels of one test: alice (two channels), bob, a viewer, an admin."""

    core: Core
    client: httpx.AsyncClient
    tokens: dict[str, str]

    async def vods(self, channel: str, n: int, title: str = "Show") -> list[int]:
        """Add ``n`` VODs to ``channel``; return their ids, oldest first."""
        found = await channels.get_channel(self.core.db, channel)
        return await add_vods(self.core.db, found, n, title=title)

    async def get(self, who: str, url: str, **params: Any) -> httpx.Response:
        """GET ``url`` as ``who`` (None: anonymous)."""
        headers = bearer(self.tokens[who]) if who else {}
        return await self.client.get(url, params=params, headers=headers)

    async def page(self, who: str, **params: Any) -> dict[str, Any]:
        """Return one library page as ``who`` (asserting a 200)."""
        response = await self.get(who, LIST, **params)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    async def walk(self, who: str, url: str = LIST, **params: Any) -> list[int]:
        """Follow the cursors to the end; return every id seen."""
        ids: list[int] = []
        cursor = None
        while True:
            query = {**params, **({"cursor": cursor} if cursor else {})}
            body = (await self.get(who, url, **query)).json()
            ids += [item["id"] for item in body["items"]]
            assert body["has_more"] == (body["next_cursor"] is not None)
            if not body["has_more"]:
                return ids
            cursor = body["next_cursor"]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The shared VOD settings, with the app's worker idle: these VODs have no media."""
    settings.vod_poll_seconds = 3600
    return settings


@pytest.fixture
async def studio(app: FastAPI, client: httpx.AsyncClient) -> Studio:
    """alice owns alice-tv and alice-two, bob owns bob-tv; vic is a viewer, root an admin."""
    core: Core = app.state.runtime.core
    tokens = {
        "alice": await make_user(core, "alice"),
        "bob": await make_user(core, "bob"),
        "vic": await make_user(core, "vic", role="viewer"),
        "root": await make_user(core, "root", role="admin"),
    }
    for owner, slug in (("alice", "alice-tv"), ("alice", "alice-two"), ("bob", "bob-tv")):
        made = await client.post(
            "/api/v1/channels", json={"slug": slug}, headers=bearer(tokens[owner])
        )
        assert made.status_code == 201
    return Studio(core, client, tokens)


async def test_pages_walk_the_whole_library_newest_first(studio: Studio) -> None:
    """limit+1 paging: every VOD once, newest first, has_more/next_cursor right on each page."""
    made = await studio.vods("alice-tv", 25)
    first = await studio.page("alice", limit=10)
    assert [i["id"] for i in first["items"]] == made[::-1][:10]
    assert (first["has_more"], first["total"], first["total_exact"]) == (True, 25, True)
    assert await studio.walk("alice", limit=10) == made[::-1]
    last = await studio.page("alice", limit=25)
    assert (last["has_more"], last["next_cursor"]) == (False, None)


@pytest.mark.parametrize("limit", ["0", "101", "-1", "ten"])
async def test_a_limit_outside_1_to_100_is_a_422(studio: Studio, limit: str) -> None:
    """limit must be 1-100."""
    response = await studio.get("alice", LIST, limit=limit)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid"


async def test_bad_cursors_are_400_not_500(studio: Studio) -> None:
    """Garbage, tampered, and other-filter cursors are refused with a 400."""
    await studio.vods("alice-tv", 3)
    good = (await studio.page("alice", limit=1))["next_cursor"]
    body, mac = good.split(".")
    flipped = body[:-1] + ("A" if body[-1] != "A" else "B") + "." + mac
    for bad, params in (
        ("garbage", {}),
        ("a.b.c", {}),
        (flipped, {}),
        ("x" * 5000, {}),
        ("a.\u00e9", {}),  # non-ASCII: must not reach hmac.compare_digest
        (good, {"status": "ready"}),  # made for another filter
    ):
        response = await studio.get("alice", LIST, cursor=bad, **params)
        assert response.status_code == 400, bad
        assert response.json()["error"]["code"] == "bad_cursor"


async def test_pages_stay_stable_while_vods_are_added(studio: Studio) -> None:
    """New VODs arriving between pages neither repeat nor hide the older ones."""
    made = await studio.vods("alice-tv", 12)
    first = await studio.page("alice", limit=5)
    await studio.vods("alice-tv", 5)
    rest = await studio.walk("alice", limit=5, cursor=first["next_cursor"])
    assert [i["id"] for i in first["items"]] + rest == made[::-1]


async def test_filters_by_status_channel_and_title(studio: Studio) -> None:
    """status, channel and a case-insensitive title search narrow the list; totals follow."""
    tv = await studio.vods("alice-tv", 6, title="Gaming")
    await studio.vods("alice-two", 4, title="Cooking 100%")
    for vod_id in tv[:2]:
        await set_status(studio.core.db, vod_id, "ready")
    await set_status(studio.core.db, tv[2], "failed")
    ready = await studio.page("alice", status="ready")
    assert ([i["id"] for i in ready["items"]], ready["total"]) == (tv[1::-1], 2)
    assert (await studio.page("alice", status="failed"))["total"] == 1
    two = await studio.page("alice", channel="alice-two", status="processing")
    assert (len(two["items"]), two["total"]) == (4, 4)
    cooking = await studio.page("alice", q="cOOK")
    assert len(cooking["items"]) == 4
    assert (cooking["total"], cooking["total_exact"]) == (None, False)
    assert len((await studio.page("alice", q="100%"))["items"]) == 4
    assert (await studio.page("alice", q="0%x"))["items"] == []  # '%' is not a wildcard
    assert (await studio.get("alice", LIST, status="done")).status_code == 422


async def test_callers_see_their_own_vods_and_admins_filter_explicitly(studio: Studio) -> None:
    """Owner-only scoping; admins pick an owner or channel, and see all only when asked."""
    alice = await studio.vods("alice-tv", 3)
    bob = await studio.vods("bob-tv", 2)
    assert await studio.walk("bob") == bob[::-1]
    assert (await studio.get("bob", LIST, channel="alice-tv")).status_code == 404
    assert (await studio.get("bob", LIST, all="true")).status_code == 403
    assert (await studio.get("bob", LIST, owner="alice")).status_code == 403
    assert await studio.walk("bob", owner="bob") == bob[::-1]
    assert (await studio.page("vic"))["total"] == 0
    assert (await studio.page("root"))["total"] == 0  # the admin's own: none
    assert await studio.walk("root", owner="alice") == alice[::-1]
    assert await studio.walk("root", channel="bob-tv") == bob[::-1]
    everything = await studio.page("root", all="true")
    assert ([i["id"] for i in everything["items"]], everything["total"]) == (
        sorted(alice + bob, reverse=True),
        5,
    )
    assert (await studio.page("root", owner="alice", channel="bob-tv"))["total"] == 0
    assert (await studio.get("root", LIST, owner="nobody")).status_code == 404


async def _truth(studio: Studio, *where: Any) -> int:
    query = select(func.count()).select_from(vod).where(vod.c.deleted_at.is_(None), *where)
    return int(str(await scalar(studio.core.db, query)))


async def _check_totals(studio: Studio) -> None:
    """Every counter-backed total equals a real count of the rows."""
    db = studio.core.db
    tv = await channels.get_channel(db, "alice-tv")
    two = await channels.get_channel(db, "alice-two")
    for status in (None, *STATUSES):
        by_status = [vod.c.status == status] if status else []
        params = {"status": status} if status else {}
        alice = (await studio.page("alice", **params))["total"]
        assert alice == await _truth(studio, vod.c.owner_id == tv.owner_id, *by_status)
        for found in (tv, two):
            total = (await studio.page("alice", channel=found.slug, **params))["total"]
            assert total == await _truth(studio, vod.c.channel_id == found.id, *by_status)
        everything = (await studio.page("root", all="true", **params))["total"]
        assert everything == await _truth(studio, *by_status)


async def test_totals_stay_exact_through_inserts_status_changes_and_deletes(
    studio: Studio,
) -> None:
    """Counters move in the same transactions as the rows, so totals never drift."""
    tv = await studio.vods("alice-tv", 5)
    two = await studio.vods("alice-two", 3)
    await studio.vods("bob-tv", 2)
    await _check_totals(studio)
    for vod_id, status in ((tv[0], "ready"), (tv[1], "failed"), (two[0], "ready")):
        await set_status(studio.core.db, vod_id, status)
    await _check_totals(studio)
    for vod_id in (tv[0], tv[2], two[1]):  # ready, processing, processing
        deleted = await studio.client.delete(
            f"{LIST}/{vod_id}", headers=bearer(studio.tokens["alice"])
        )
        assert deleted.status_code == 204
    await _check_totals(studio)
    await studio.vods("alice-tv", 2)
    await _check_totals(studio)


async def test_get_patch_delete_are_404_for_everyone_but_owner_and_admins(
    studio: Studio,
) -> None:
    """Other broadcasters, viewers and moderators get 404; the owner edits and deletes."""
    [vod_id] = await studio.vods("alice-tv", 1)
    url = f"{LIST}/{vod_id}"
    moderator = await studio.client.put(
        "/api/v1/channels/alice-tv/moderators/bob", json={}, headers=bearer(studio.tokens["alice"])
    )
    assert moderator.status_code == 200
    for who in ("bob", "vic"):
        headers = bearer(studio.tokens[who])
        assert (await studio.client.get(url, headers=headers)).status_code == 404
        patched = await studio.client.patch(url, json={"title": "mine"}, headers=headers)
        assert patched.status_code == 404
        assert (await studio.client.delete(url, headers=headers)).status_code == 404
    assert (await studio.get("root", url)).status_code == 200
    owner = bearer(studio.tokens["alice"])
    changed = await studio.client.patch(
        url, json={"title": "  Best of  ", "visibility": "private"}, headers=owner
    )
    assert changed.status_code == 200
    body = changed.json()
    assert (body["title"], body["visibility"], body["effective_visibility"]) == (
        "Best of",
        "private",
        "private",
    )
    for bad in ({"visibility": "secret"}, {"title": ""}, {"owner_id": 2}):
        assert (await studio.client.patch(url, json=bad, headers=owner)).status_code == 422
    assert (await studio.client.delete(url, headers=owner)).status_code == 204
    assert (await studio.client.get(url, headers=owner)).status_code == 404
    assert (await studio.client.delete(url, headers=owner)).status_code == 404
    assert (await studio.page("alice"))["total"] == 0
    assert (await studio.get("alice", f"{LIST}/99999999999999999999")).status_code == 422


async def test_the_public_list_shows_ready_public_vods_only(studio: Studio) -> None:
    """Viewers see ready VODs whose effective visibility is public, newest first."""
    owner = bearer(studio.tokens["alice"])
    v = await studio.vods("alice-tv", 5)
    for vod_id in (v[0], v[1], v[2], v[4]):
        await set_status(studio.core.db, vod_id, "ready")
    for vod_id, visibility in ((v[1], "private"), (v[2], "unlisted"), (v[4], "public")):
        patched = await studio.client.patch(
            f"{LIST}/{vod_id}", json={"visibility": visibility}, headers=owner
        )
        assert patched.status_code == 200
    public = "/api/v1/channels/alice-tv/vods"
    assert await studio.walk("", public, limit=1) == [v[4], v[0]]
    body = (await studio.get("", public)).json()
    assert body["total"] is None
    assert "status" not in body["items"][0]
    # An unlisted channel lists only what is explicitly public.
    two = await studio.vods("alice-two", 2)
    await studio.client.patch(
        "/api/v1/channels/alice-two", json={"visibility": "unlisted"}, headers=owner
    )
    for vod_id in two:
        await set_status(studio.core.db, vod_id, "ready")
    await studio.client.patch(f"{LIST}/{two[0]}", json={"visibility": "public"}, headers=owner)
    assert await studio.walk("", "/api/v1/channels/alice-two/vods") == [two[0]]
    # A private channel is hidden from outsiders altogether.
    await studio.client.patch(
        "/api/v1/channels/alice-two", json={"visibility": "private"}, headers=owner
    )
    assert (await studio.get("", "/api/v1/channels/alice-two/vods")).status_code == 404
    assert (await studio.get("alice", "/api/v1/channels/alice-two/vods")).status_code == 200
    bad = await studio.get("", public, cursor="nope")
    assert bad.status_code == 400


async def test_odd_input_is_a_4xx_on_every_database(studio: Studio) -> None:
    """Names that cannot exist and NUL characters never reach the database (no 500)."""
    [vod_id] = await studio.vods("alice-tv", 1)
    for params in ({"channel": "\x00"}, {"owner": "x\x00"}, {"channel": "NOT A SLUG"}):
        assert (await studio.get("root", LIST, **params)).status_code == 404, params
    assert (await studio.get("alice", LIST, q="a\x00")).status_code == 422
    assert (await studio.get("", "/api/v1/channels/%00/vods")).status_code == 404
    patched = await studio.client.patch(
        f"{LIST}/{vod_id}", json={"title": "a\x00b"}, headers=bearer(studio.tokens["alice"])
    )
    assert patched.status_code == 422


async def test_the_watch_page_of_a_vod_still_processing(studio: Studio) -> None:
    """The page says the recording is being processed; its playlists are not served yet."""
    [vod_id] = await studio.vods("alice-tv", 1, title="Soon")
    page = await studio.get("", f"/v/{vod_id}")
    assert page.status_code == 200
    assert "still being processed" in page.text
    assert (await studio.get("", f"/hls/vods/{vod_id}/master.m3u8")).status_code == 404
    assert (await studio.get("", "/v/999999")).status_code == 404

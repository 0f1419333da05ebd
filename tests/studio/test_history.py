"""Session history: idempotent sampling, the chart endpoint, the keyset-paged session list."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from stagecast.db import Database
from stagecast.db.schema import utcnow
from stagecast.studio import history
from stagecast.studio.history import Sample
from tests.conftest import RunningServer
from tests.studio.conftest import fake_session, owned_channel, person


async def test_samples_are_stored_once_and_only_for_existing_sessions(db: Database) -> None:
    """A retried batch adds nothing twice; a session that vanished is skipped, not an error."""
    _, channel = await owned_channel(db)
    session_id = await fake_session(db, channel.id)
    start = utcnow().replace(microsecond=0)
    batch = [
        Sample(session_id, start + timedelta(seconds=10 * i), i, 1000.0 + i, "good")
        for i in range(3)
    ]
    await history.record(db, [*batch, Sample(999_999, start, 1, None, "good")])
    await history.record(db, batch)
    found = await history.samples(db, session_id)
    assert [(s.viewers, s.bitrate_kbps) for s in found] == [(0, 1000.0), (1, 1001.0), (2, 1002.0)]
    assert found[0].sampled_at == start
    later = await history.samples(db, session_id, after=found[0].sampled_at, limit=1)
    assert [s.viewers for s in later] == [1]


@pytest.fixture
async def http(db_server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the running server."""
    async with httpx.AsyncClient(base_url=db_server.url, timeout=10) as client:
        yield client


async def test_the_chart_endpoint_serves_the_session_s_samples(
    db_server: RunningServer, http: httpx.AsyncClient
) -> None:
    """Owners read a session's samples oldest first, paged; others and other channels get 404."""
    db = db_server.core.db
    owner, channel = await owned_channel(db)
    _, other_channel = await owned_channel(db)
    session_id = await fake_session(db, channel.id)
    foreign = await fake_session(db, other_channel.id)
    start = utcnow().replace(microsecond=0)
    await history.record(
        db,
        [Sample(session_id, start + timedelta(seconds=10 * i), i, 500.0, "good") for i in range(5)],
    )
    base = f"/api/v1/studio/channels/{channel.slug}/sessions"
    page = (await http.get(f"{base}/{session_id}/samples?limit=3", headers=owner.headers)).json()
    assert [s["viewers"] for s in page["items"]] == [0, 1, 2]
    rest = await http.get(
        f"{base}/{session_id}/samples", params={"after": page["next"]}, headers=owner.headers
    )
    assert [s["viewers"] for s in rest.json()["items"]] == [3, 4]
    assert rest.json()["next"] is None
    stranger = await person(db)
    assert (
        await http.get(f"{base}/{session_id}/samples", headers=stranger.headers)
    ).status_code == 404
    assert (await http.get(f"{base}/{foreign}/samples", headers=owner.headers)).status_code == 404
    naive = await http.get(
        f"{base}/{session_id}/samples",
        params={"after": "2024-01-01T00:00:00"},
        headers=owner.headers,
    )
    assert naive.status_code == 400


async def test_sessions_are_listed_newest_first_with_a_cursor(
    db_server: RunningServer, http: httpx.AsyncClient
) -> None:
    """Keyset pages over the channel's sessions; a forged cursor is a 400."""
    db = db_server.core.db
    owner, channel = await owned_channel(db)
    made = [await fake_session(db, channel.id, state="ended") for _ in range(3)]
    base = f"/api/v1/studio/channels/{channel.slug}/sessions"
    first = (await http.get(base, params={"limit": 2}, headers=owner.headers)).json()
    assert [s["id"] for s in first["items"]] == made[::-1][:2]
    assert first["has_more"] is True
    second = await http.get(
        base, params={"limit": 2, "cursor": first["next_cursor"]}, headers=owner.headers
    )
    assert [s["id"] for s in second.json()["items"]] == [made[0]]
    assert second.json()["has_more"] is False
    forged = await http.get(base, params={"cursor": "abc.def"}, headers=owner.headers)
    assert forged.status_code == 400

"""Channels over HTTP: create, list, edit, rotate keys, moderators, and who sees what."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from stagecast.channels import service
from tests.auth.test_api import bearer, make_user


@pytest.fixture
async def tokens(app: FastAPI) -> dict[str, str]:
    """API tokens of an owner, another broadcaster, a viewer and an admin."""
    core = app.state.runtime.core
    return {
        "owner": await make_user(core, "owner"),
        "other": await make_user(core, "other"),
        "viewer": await make_user(core, "viewer", role="viewer"),
        "admin": await make_user(core, "root", role="admin"),
    }


async def test_create_returns_the_key_once_and_it_verifies(
    client: httpx.AsyncClient, app: FastAPI, tokens: dict[str, str]
) -> None:
    """The stream key comes back at creation, opens the channel, and is not shown again."""
    created = await client.post(
        "/api/v1/channels",
        json={"slug": "my-show", "title": "My Show"},
        headers=bearer(tokens["owner"]),
    )
    assert created.status_code == 201
    body = created.json()
    key = body["stream_key"]
    assert body["rtmp_url"].startswith("rtmp://")
    assert body["rtmp_url"].endswith("/live")
    match = await service.verify_stream_key(app.state.runtime.core.db, key)
    assert match is not None
    assert match.slug == "my-show"
    shown = await client.get("/api/v1/channels/my-show", headers=bearer(tokens["owner"]))
    assert key not in shown.text
    assert "stream_key" not in shown.json()


async def test_rotating_the_key_invalidates_the_old_one(
    client: httpx.AsyncClient, app: FastAPI, tokens: dict[str, str]
) -> None:
    """After rotation the old key opens nothing and the new one opens the channel."""
    created = await client.post(
        "/api/v1/channels", json={"slug": "rot"}, headers=bearer(tokens["owner"])
    )
    old = created.json()["stream_key"]
    rotated = await client.post("/api/v1/channels/rot/key", headers=bearer(tokens["owner"]))
    new = rotated.json()["stream_key"]
    db = app.state.runtime.core.db
    assert await service.verify_stream_key(db, old) is None
    assert (await service.verify_stream_key(db, new)) is not None
    tampered = new[:-1] + ("A" if new[-1] != "A" else "B")
    assert await service.verify_stream_key(db, tampered) is None
    assert await service.verify_stream_key(db, "nonsense") is None


async def test_non_owners_get_404_and_admins_manage_all(
    client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    """Another broadcaster cannot see, edit or rotate; an admin can."""
    await client.post("/api/v1/channels", json={"slug": "mine"}, headers=bearer(tokens["owner"]))
    for method, path in (
        ("GET", "/api/v1/channels/mine"),
        ("PATCH", "/api/v1/channels/mine"),
        ("POST", "/api/v1/channels/mine/key"),
    ):
        kwargs = {"json": {"title": "x"}} if method == "PATCH" else {}
        response = await client.request(method, path, headers=bearer(tokens["other"]), **kwargs)
        assert response.status_code == 404, (method, path)
    patched = await client.patch(
        "/api/v1/channels/mine", json={"title": "By admin"}, headers=bearer(tokens["admin"])
    )
    assert patched.json()["title"] == "By admin"
    mine = await client.get("/api/v1/channels", headers=bearer(tokens["other"]))
    assert mine.json()["items"] == []
    everything = await client.get("/api/v1/channels?all=true", headers=bearer(tokens["admin"]))
    assert [c["slug"] for c in everything.json()["items"]] == ["mine"]


async def test_viewers_cannot_own_channels(
    client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    """Only broadcasters and admins can create channels."""
    response = await client.post(
        "/api/v1/channels", json={"slug": "nope"}, headers=bearer(tokens["viewer"])
    )
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("body", "what"),
    [
        ({"slug": "Bad Slug"}, "uppercase and space"),
        ({"slug": "-edge"}, "leading dash"),
        ({"slug": "a" * 41}, "too long"),
        ({"slug": "ab"}, "too short"),
        ({"slug": "api"}, "reserved"),
        ({"slug": "ok-slug", "visibility": "secret"}, "bad enum"),
        ({"slug": "ok-slug", "title": "t" * 141}, "long title"),
        ({"slug": "ok-slug", "owner_id": 1}, "unknown field"),
        ({"slug": "ok-slug", "dvr_window_seconds": "lots"}, "wrong type"),
    ],
)
async def test_bad_channel_input_is_422(
    client: httpx.AsyncClient, tokens: dict[str, str], body: dict[str, object], what: str
) -> None:
    """Bad slugs, enums, lengths, types and unknown fields are a 422 with a message."""
    response = await client.post("/api/v1/channels", json=body, headers=bearer(tokens["owner"]))
    assert response.status_code == 422, what
    assert response.json()["error"]["message"]


async def test_duplicate_slug_is_409(client: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    """A taken slug is a conflict."""
    assert (
        await client.post("/api/v1/channels", json={"slug": "dup"}, headers=bearer(tokens["owner"]))
    ).status_code == 201
    again = await client.post(
        "/api/v1/channels", json={"slug": "dup"}, headers=bearer(tokens["other"])
    )
    assert again.status_code == 409


async def test_moderators_are_managed_by_the_owner_only(
    client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    """The owner grants and revokes; a moderator can list but not grant; strangers get 404."""
    await client.post("/api/v1/channels", json={"slug": "modded"}, headers=bearer(tokens["owner"]))
    granted = await client.put(
        "/api/v1/channels/modded/moderators/viewer",
        json={"can_ban": False},
        headers=bearer(tokens["owner"]),
    )
    assert granted.status_code == 200
    assert granted.json()["can_ban"] is False
    listed = await client.get(
        "/api/v1/channels/modded/moderators", headers=bearer(tokens["viewer"])
    )
    assert [m["username"] for m in listed.json()["items"]] == ["viewer"]
    escalate = await client.put(
        "/api/v1/channels/modded/moderators/other", json={}, headers=bearer(tokens["viewer"])
    )
    assert escalate.status_code == 404
    stranger = await client.get(
        "/api/v1/channels/modded/moderators", headers=bearer(tokens["other"])
    )
    assert stranger.status_code == 404
    unknown_user = await client.put(
        "/api/v1/channels/modded/moderators/ghost", json={}, headers=bearer(tokens["owner"])
    )
    assert unknown_user.status_code == 404
    removed = await client.delete(
        "/api/v1/channels/modded/moderators/viewer", headers=bearer(tokens["owner"])
    )
    assert removed.status_code == 204
    again = await client.delete(
        "/api/v1/channels/modded/moderators/viewer", headers=bearer(tokens["owner"])
    )
    assert again.status_code == 404

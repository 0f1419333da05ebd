"""The channel ``latency`` setting: API, live status, the live edge lookup, CLI, migration."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.auth import service as accounts
from stagecast.auth.models import account
from stagecast.channels import service
from stagecast.channels.models import channel
from stagecast.config import normalise_database_url
from stagecast.db import Database, Kind, open_database
from stagecast.db.migrate import upgrade
from stagecast.db.schema import utcnow
from stagecast.errors import Unprocessable
from stagecast.live.service import channel_live
from tests.auth.test_api import bearer, make_user
from tests.conftest import PG_URL, make_settings


@pytest.fixture
async def owner(app: FastAPI) -> str:
    """An API token of a broadcaster."""
    return await make_user(app.state.runtime.core, "owner")


async def _create(client: httpx.AsyncClient, owner: str, **body: object) -> httpx.Response:
    return await client.post("/api/v1/channels", json=body, headers=bearer(owner))


async def test_a_new_channel_is_low_latency_by_default(
    client: httpx.AsyncClient, app: FastAPI, owner: str
) -> None:
    """Created without a latency, a channel is ``low`` in the API, its key match and live status."""
    created = await _create(client, owner, slug="quick", title="Quick")
    assert created.status_code == 201, created.text
    assert created.json()["channel"]["latency"] == "low"
    shown = await client.get("/api/v1/channels/quick", headers=bearer(owner))
    assert shown.json()["latency"] == "low"
    status = await client.get("/api/v1/channels/quick/live")
    assert status.status_code == 200, status.text
    assert status.json()["latency"] == "low"
    match = await service.verify_stream_key(app.state.runtime.core.db, created.json()["stream_key"])
    assert match is not None
    assert match.latency == "low"


async def test_latency_is_set_at_creation_and_changed_by_patch(
    client: httpx.AsyncClient, app: FastAPI, owner: str
) -> None:
    """``standard`` at creation is kept; PATCH changes it, and other edits leave it alone."""
    db = app.state.runtime.core.db
    created = await _create(client, owner, slug="steady", latency="standard")
    assert created.json()["channel"]["latency"] == "standard"
    status = await client.get("/api/v1/channels/steady/live")
    assert status.json()["latency"] == "standard"
    retitled = await client.patch(
        "/api/v1/channels/steady", json={"title": "Steady"}, headers=bearer(owner)
    )
    assert retitled.json()["latency"] == "standard"
    patched = await client.patch(
        "/api/v1/channels/steady", json={"latency": "low"}, headers=bearer(owner)
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["latency"] == "low"
    shown = await client.get("/api/v1/channels/steady", headers=bearer(owner))
    assert shown.json()["latency"] == "low"
    found = await channel_live(db, "steady")
    assert found is not None
    assert found.latency == "low"
    listed = await client.get("/api/v1/channels", headers=bearer(owner))
    assert [c["latency"] for c in listed.json()["items"]] == ["low"]


@pytest.mark.parametrize("value", ["ultra", "LOW", "", 1, None])
async def test_a_bad_latency_is_422_naming_the_field(
    client: httpx.AsyncClient, owner: str, value: object
) -> None:
    """Any latency but ``low`` or ``standard`` is refused at creation with a message naming it."""
    response = await _create(client, owner, slug="bad-latency", latency=value)
    assert response.status_code == 422, response.text
    assert "latency" in response.json()["error"]["message"]
    assert "'low' or 'standard'" in response.json()["error"]["message"]


@pytest.mark.parametrize("value", ["ultra", "Standard", 2, ["low"]])
async def test_a_bad_latency_in_a_patch_is_422_and_changes_nothing(
    client: httpx.AsyncClient, owner: str, value: object
) -> None:
    """PATCH with a bad latency is a 422 naming the field; the channel keeps its setting."""
    await _create(client, owner, slug="keep", latency="standard")
    response = await client.patch(
        "/api/v1/channels/keep", json={"latency": value}, headers=bearer(owner)
    )
    assert response.status_code == 422, response.text
    assert "latency" in response.json()["error"]["message"]
    shown = await client.get("/api/v1/channels/keep", headers=bearer(owner))
    assert shown.json()["latency"] == "standard"


async def test_the_service_refuses_a_bad_latency(db: Database) -> None:
    """Callers below the API (the CLI) get Unprocessable for a bad latency, and no channel."""
    owner = await accounts.create_account(db, "svc-owner", "password123", "broadcaster")
    with pytest.raises(Unprocessable, match="latency must be one of low, standard"):
        await service.create_channel(db, owner, "svc-chan", latency="fast")
    with pytest.raises(Unprocessable, match="latency must be one of low, standard"):
        await service.update_channel(db, owner, "svc-chan", {"latency": "fast"})
    assert await service.list_channels(db, owner) == []


async def test_the_database_refuses_a_bad_latency(db: Database) -> None:
    """The CHECK constraint holds even for a write that skips the service."""
    owner = await accounts.create_account(db, "raw-owner", "password123", "broadcaster")
    created, _ = await service.create_channel(db, owner, "raw-chan")

    async def unit(conn: AsyncConnection) -> None:
        await conn.execute(
            text("UPDATE channel SET latency = 'fast' WHERE id = :id"), {"id": created.id}
        )

    with pytest.raises(IntegrityError):
        await db.run(unit, kind=Kind.WRITE, name="raw_latency")
    assert (await service.get_channel(db, "raw-chan")).latency == "low"


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(data_dir),
        "STAGECAST_DATA_DIR": str(data_dir),
        "STAGECAST_LOG_LEVEL": "warning",
    }
    stagecast = Path(sys.executable).with_name("stagecast")
    return subprocess.run(
        [str(stagecast), *args], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.timeout(120)
async def test_the_cli_creates_a_channel_with_a_latency(tmp_path: Path) -> None:
    """``channel create --latency standard`` stores it; a bad value exits non-zero with a line."""
    data = tmp_path / "data"
    user = await asyncio.to_thread(
        _cli, data, "user", "create", "cli-owner", "--password", "pw-12345678"
    )
    assert user.returncode == 0, user.stderr
    made = await asyncio.to_thread(
        _cli, data, "channel", "create", "cli-chan", "--owner", "cli-owner", "--latency", "standard"
    )
    assert made.returncode == 0, made.stderr
    bad = await asyncio.to_thread(
        _cli, data, "channel", "create", "cli-bad", "--owner", "cli-owner", "--latency", "fast"
    )
    assert bad.returncode != 0
    assert "latency must be one of low, standard" in bad.stderr
    db = open_database(make_settings(data))
    try:
        assert (await service.get_channel(db, "cli-chan")).latency == "standard"
    finally:
        await db.dispose()


# -- Migration ----------------------------------------------------------------------------------


@pytest.fixture
async def unmigrated(backend: str, tmp_path: Path) -> AsyncIterator[Database]:
    """An empty database of the current back end, with no migration applied."""
    if backend == "sqlite":
        database = open_database(make_settings(tmp_path / "fresh"))
        yield database
        await database.dispose()
        return
    assert PG_URL
    admin = normalise_database_url(PG_URL).replace("postgresql+asyncpg://", "postgresql://")
    name = f"stagecast_latency_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin, timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    database = open_database(
        make_settings(tmp_path / "fresh", f"{admin.rpartition('/')[0]}/{name}")
    )
    try:
        yield database
    finally:
        await database.dispose()
        conn = await asyncpg.connect(admin, timeout=10)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


async def test_the_migration_keeps_existing_channels_and_makes_them_low(
    unmigrated: Database,
) -> None:
    """A database with channels from before 0006 keeps every one of them, each ``low``."""
    db = unmigrated
    await upgrade(db, "0001")
    now = utcnow()

    async def seed(conn: AsyncConnection) -> None:
        result = await conn.execute(
            insert(account)
            .values(username="old", password_hash="x", role="broadcaster", created_at=now)
            .returning(account.c.id)
        )
        owner_id = result.scalar_one()
        for i in range(3):
            await conn.execute(
                insert(channel).values(
                    slug=f"old-{i}", owner_id=owner_id, title=f"Old {i}", description="",
                    visibility="public", profile="passthrough", dvr_window_seconds=0,
                    key_lookup=f"lookup{i}", key_hash="0" * 64, key_version=1,
                    key_rotated_at=now, created_at=now, updated_at=now,
                )
            )  # fmt: skip

    await db.run(seed, kind=Kind.WRITE, name="seed_old_channels")
    await upgrade(db)

    async def read(conn: AsyncConnection) -> list[tuple[str, str]]:
        rows = await conn.execute(
            select(channel.c.slug, channel.c.latency).order_by(channel.c.slug)
        )
        return [(r.slug, r.latency) for r in rows]

    assert await db.run(read, kind=Kind.READ, name="read_latency") == [
        ("old-0", "low"),
        ("old-1", "low"),
        ("old-2", "low"),
    ]

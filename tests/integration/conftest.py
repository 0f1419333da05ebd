"""Fixtures for the tests that run the real ``stagecast`` command in subprocesses."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.conftest import PG_URL


@pytest.fixture
async def database() -> AsyncIterator[str]:
    """A fresh PostgreSQL database of this test's own (dropped afterwards)."""
    assert PG_URL
    admin = PG_URL.replace("postgresql+asyncpg://", "postgresql://")
    base = admin.rpartition("/")[0]
    name = f"stagecast_it_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
        yield f"{base}/{name}"
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()

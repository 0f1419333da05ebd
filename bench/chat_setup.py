"""Set up a chat benchmark database: a channel, its owner and the sender accounts' API tokens.

SQLite in a temporary directory, or a scratch PostgreSQL database (created next to the one
``admin_url`` names, dropped by ``BenchChannel.drop``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from stagecast.auth import service as accounts
from stagecast.channels import service as channels
from stagecast.config import Settings
from stagecast.db import open_database
from stagecast.db.migrate import upgrade


@dataclass
class BenchChannel:
    """Where the benchmark's servers find their data, and who posts."""

    database_url: str
    data_dir: Path
    slug: str
    tokens: list[str]
    admin_url: str | None = None
    scratch: str | None = None

    async def drop(self) -> None:
        """Drop the scratch PostgreSQL database, if one was made."""
        if self.admin_url and self.scratch:
            conn = await asyncpg.connect(self.admin_url, timeout=10)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{self.scratch}" WITH (FORCE)')
            finally:
                await conn.close()


def _plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def scratch_database(admin_url: str, name: str) -> str:
    """Create (or recreate) database ``name`` beside ``admin_url``; return its URL."""
    conn = await asyncpg.connect(_plain(admin_url), timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return _plain(admin_url).rsplit("/", 1)[0] + f"/{name}"


async def prepare(data_dir: Path, admin_url: str | None, *, senders: int) -> BenchChannel:
    """Create the channel ``bench``, its owner and ``senders`` posting accounts."""
    scratch = None
    if admin_url:
        scratch = f"stagecast_bench_chat_{os.getpid()}"
        url = await scratch_database(admin_url, scratch)
    else:
        url = f"sqlite:///{data_dir / 'stagecast.db'}"
    settings = Settings(_env_file=None, data_dir=data_dir, database_url=url, secret_key="bench")  # type: ignore[call-arg]
    db = open_database(settings)
    try:
        await upgrade(db)
        owner = await accounts.create_account(db, "bench-owner", "bench-password", "broadcaster")
        await channels.create_channel(db, owner, "bench")
        tokens = []
        for i in range(senders):
            sender = await accounts.create_account(db, f"sender{i}", "bench-password", "viewer")
            tokens.append(await accounts.create_api_token(db, sender.id, "bench"))
    finally:
        await db.dispose()
    return BenchChannel(url, data_dir, "bench", tokens, admin_url and _plain(admin_url), scratch)

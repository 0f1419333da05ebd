"""``stagecast user set-password``: the admin's reset, run as a real process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from stagecast.auth import service as accounts
from stagecast.config import Settings
from stagecast.db import Database

NEW = "green kettle 42"


def cli_env(settings: Settings) -> dict[str, str]:
    """The environment that points the CLI at the test's database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAGECAST_")}
    env |= {
        "STAGECAST_DATA_DIR": str(settings.data_dir),
        "STAGECAST_SECRET_KEY": "test-secret-key",
        "STAGECAST_LOG_LEVEL": "warning",
    }
    if settings.database_url:
        env["STAGECAST_DATABASE_URL"] = settings.database_url
    return env


async def run_cli(
    settings: Settings, *args: str, stdin: bytes | int | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m stagecast user set-password ARGS`` (bounded) and return what it did."""
    command = [sys.executable, "-m", "stagecast", "user", "set-password", *args]

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command,
            env=cli_env(settings),
            input=stdin.decode() if isinstance(stdin, bytes) else None,
            stdin=stdin if isinstance(stdin, int) else None,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            start_new_session=True,
        )

    return await asyncio.to_thread(run)


async def signed_in(db: Database, token: str) -> bool:
    """Tell whether the login session ``token`` still works."""
    return await accounts.session_account(db, token) is not None


async def test_set_password_changes_it_and_signs_out_every_session(
    db: Database, settings: Settings
) -> None:
    """The new password works, the old fails, and the user's sessions are all ended."""
    bob = await accounts.create_account(db, "bob", "password123", "viewer")
    token, _ = await accounts.open_session(db, bob.id, 1)
    done = await run_cli(settings, "bob", "--password", NEW)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "password of bob changed; 1 session(s) signed out"
    assert await accounts.authenticate(db, "bob", NEW) is not None
    assert await accounts.authenticate(db, "bob", "password123") is None
    assert not await signed_in(db, token)


async def test_the_password_can_come_from_standard_input(db: Database, settings: Settings) -> None:
    """Piped in, one line is the password (so it stays out of the process list)."""
    await accounts.create_account(db, "bob", "password123", "viewer")
    done = await run_cli(settings, "bob", stdin=f"{NEW}\n".encode())
    assert done.returncode == 0, done.stderr
    assert await accounts.authenticate(db, "bob", NEW) is not None


async def answer_at_a_terminal(settings: Settings, username: str, *lines: str) -> int:
    """Run set-password on a pseudo-terminal, typing each line once its prompt is shown.

    Typing ahead would be lost: turning echo off flushes what waits in the terminal, so each
    line waits for getpass's prompt.
    """
    leader, follower = os.openpty()
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "stagecast", "user", "set-password", username,
            env=cli_env(settings), stdin=follower, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        assert process.stdout is not None
        assert process.stderr is not None
        async with asyncio.timeout(30):
            for line in lines:
                await process.stdout.readuntil(b":")  # click's prompt
                # getpass writes its own " " prompt once echo is off and the input flushed.
                await process.stderr.readuntil(b" ")
                os.write(leader, f"{line}\n".encode())
            return await process.wait()
    finally:
        os.close(follower)
        os.close(leader)


async def test_at_a_terminal_it_asks_twice_without_echo(db: Database, settings: Settings) -> None:
    """At a terminal the password is asked twice; two that differ change nothing."""
    await accounts.create_account(db, "bob", "password123", "viewer")
    assert await answer_at_a_terminal(settings, "bob", NEW, "something else") == 1
    assert await accounts.authenticate(db, "bob", "password123") is not None
    assert await answer_at_a_terminal(settings, "bob", NEW, NEW) == 0
    assert await accounts.authenticate(db, "bob", NEW) is not None


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["nobody", "--password", NEW], None, "stagecast: no user 'nobody'"),
        (["bob", "--password", "short"], None, "stagecast: password must be 8-256 characters"),
        (
            ["bob", "--password", "bob-the-builder"],
            None,
            "stagecast: password must not contain the username",
        ),
        (
            ["bob", "--password", "password"],
            None,
            "stagecast: password is one of the most common passwords; choose another",
        ),
        (["bob"], b"", "stagecast: no password on standard input (or pass --password)"),
        ([], None, "stagecast: Missing argument 'username'."),
    ],
)
async def test_bad_input_is_one_line_and_a_non_zero_exit(
    db: Database, settings: Settings, args: list[str], stdin: bytes | None, message: str
) -> None:
    """An unknown user or a bad password: one line on stderr, exit 1 or 2, nothing changed."""
    await accounts.create_account(db, "bob", "password123", "viewer")
    done = await run_cli(settings, *args, stdin=stdin)
    assert done.returncode in (1, 2)
    assert done.stderr.strip() == message
    assert await accounts.authenticate(db, "bob", "password123") is not None

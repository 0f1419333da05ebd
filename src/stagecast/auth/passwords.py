"""Password hashing with argon2id, off the event loop."""

from __future__ import annotations

import asyncio
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 8
MAX_LENGTH = 256


@cache
def _hasher() -> PasswordHasher:
    return PasswordHasher()


@cache
def _dummy_hash() -> str:
    """A hash verified against when the username is unknown, so both paths cost the same."""
    return _hasher().hash("stagecast-timing-equaliser")


async def hash_password(password: str) -> str:
    """Return the argon2id hash of ``password`` (runs in a worker thread)."""
    return await asyncio.to_thread(_hasher().hash, password)


async def verify_password(password: str, stored_hash: str | None) -> bool:
    """Tell whether ``password`` matches ``stored_hash``; None checks a dummy to equalise timing."""

    def check() -> bool:
        try:
            ok = _hasher().verify(stored_hash or _dummy_hash(), password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return ok and stored_hash is not None

    return await asyncio.to_thread(check)

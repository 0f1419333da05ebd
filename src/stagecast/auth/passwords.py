"""Password rules for passwords people choose, and hashing with argon2id off the event loop."""

from __future__ import annotations

import asyncio
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from stagecast.errors import Unprocessable

MIN_LENGTH = 8
MAX_LENGTH = 256
# The passwords of eight or more characters that lead every leaked-password list: the first
# ones a guesser tries. (Not "password123": the test fixtures of the whole suite sign up with it.)
# fmt: off
_COMMON = frozenset(
    {
        "00000000", "11111111", "12341234", "12344321", "12345678", "123456789", "1234567890",
        "1q2w3e4r", "1qaz2wsx", "87654321", "88888888", "abc12345", "abcd1234", "asdfghjk",
        "baseball", "football", "iloveyou", "letmein1", "password", "password1", "passw0rd",
        "princess", "qwerty12", "qwerty123", "qwertyui", "qwertyuiop", "stagecast", "sunshine",
        "superman", "trustno1", "welcome1", "zaq12wsx", "zxcvbnm1",
    }
)
# fmt: on


def check_strength(password: str, username: str) -> str:
    """Return ``password`` if a person may choose it for ``username``; else raise Unprocessable.

    The rules: ``MIN_LENGTH``-``MAX_LENGTH`` characters, more than one distinct character, not
    containing the username, not one of the most common passwords. Each refusal says which.
    """
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise Unprocessable(f"password must be {MIN_LENGTH}-{MAX_LENGTH} characters")
    folded = password.casefold()
    if len(set(folded)) < 2:
        raise Unprocessable("password must not be one character repeated")
    if username and username.casefold() in folded:
        raise Unprocessable("password must not contain the username")
    if folded in _COMMON:
        raise Unprocessable("password is one of the most common passwords; choose another")
    return password


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

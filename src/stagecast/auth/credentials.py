"""Credentials made of a random lookup id and a secret: API tokens, stream keys, invites.

Only a SHA-256 of the secret is stored. The secret carries 192 bits of entropy, so a fast hash
is enough (there is nothing to brute-force), and verification is one indexed lookup by the id
plus one constant-time comparison: O(1) whatever the number of rows.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

_LOOKUP_BYTES = 8  # 16 hex characters; unique per table, checked by a constraint
_SECRET_BYTES = 24  # 192 bits, 32 URL-safe characters


@dataclass(frozen=True)
class Credential:
    """A freshly made credential: ``value`` is shown once, the rest is stored."""

    value: str
    lookup_id: str
    secret_hash: str


def hash_secret(secret: str) -> str:
    """Return the hex SHA-256 of ``secret``."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_credential(prefix: str = "") -> Credential:
    """Make ``[prefix_]<lookup>_<secret>``."""
    lookup_id = secrets.token_hex(_LOOKUP_BYTES)
    secret = secrets.token_urlsafe(_SECRET_BYTES)
    head = f"{prefix}_" if prefix else ""
    return Credential(f"{head}{lookup_id}_{secret}", lookup_id, hash_secret(secret))


def parse_credential(value: str, prefix: str = "") -> tuple[str, str] | None:
    """Split a presented credential into ``(lookup_id, secret)``, or None if malformed."""
    if prefix:
        if not value.startswith(f"{prefix}_"):
            return None
        value = value[len(prefix) + 1 :]
    lookup_id, sep, secret = value.partition("_")
    if not sep or len(lookup_id) != _LOOKUP_BYTES * 2 or not secret or len(secret) > 128:
        return None
    if any(c not in "0123456789abcdef" for c in lookup_id):
        return None
    return lookup_id, secret


def secret_matches(secret: str, stored_hash: str) -> bool:
    """Compare ``secret`` with a stored hash in constant time."""
    return hmac.compare_digest(hash_secret(secret), stored_hash)

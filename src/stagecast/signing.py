"""Tamper-evident tokens: signed, optionally expiring, bound to a purpose.

Used for pagination cursors (opaque to clients, a forged one is a 400) and for playback
tokens of private channels and VODs. The format is ``base64url(json).base64url(hmac)``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

from stagecast.errors import BadRequest


class BadSignature(BadRequest):
    """A token was malformed, forged, expired, or made for another purpose."""

    code = "bad_token"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, purpose: str, body: str) -> str:
    digest = hmac.new(secret.encode(), f"{purpose}\x00{body}".encode(), hashlib.sha256).digest()
    return _b64(digest[:18])


def sign(secret: str, purpose: str, payload: Any, *, ttl: float | None = None) -> str:
    """Return a token carrying ``payload`` (JSON-able) for ``purpose``, valid ``ttl`` seconds."""
    wrapped = {"p": payload, "e": int(time.time() + ttl) if ttl is not None else None}
    body = _b64(json.dumps(wrapped, separators=(",", ":")).encode())
    return f"{body}.{_mac(secret, purpose, body)}"


def unsign(secret: str, purpose: str, token: str, *, max_length: int = 1024) -> Any:
    """Return the payload of ``token``. Raises BadSignature if it is not exactly what we made."""
    if (
        not isinstance(token, str)
        or len(token) > max_length
        or not token.isascii()
        or token.count(".") != 1
    ):
        raise BadSignature(f"malformed {purpose}")
    body, mac = token.split(".")
    if not hmac.compare_digest(mac, _mac(secret, purpose, body)):
        raise BadSignature(f"invalid {purpose}")
    try:
        wrapped = json.loads(_unb64(body))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadSignature(f"malformed {purpose}") from exc
    expires = wrapped.get("e") if isinstance(wrapped, dict) else None
    if expires is not None and expires < time.time():
        raise BadSignature(f"expired {purpose}")
    return wrapped["p"] if isinstance(wrapped, dict) else None

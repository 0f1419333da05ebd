"""Signed, expiring playback tokens for private channels and VODs.

A token is bound to one target (``channel:<id>`` or ``vod:<id>``): a token for one channel
does not open another. Players carry it as ``?token=`` on playlist and segment requests.
"""

from __future__ import annotations

from stagecast.signing import BadSignature, sign, unsign

_PURPOSE = "playback"
DEFAULT_TTL = 6 * 3600.0


def issue(secret: str, target: str, ttl: float = DEFAULT_TTL) -> str:
    """Return a playback token for ``target`` valid for ``ttl`` seconds."""
    return sign(secret, _PURPOSE, {"t": target}, ttl=ttl)


def allows(secret: str, token: str | None, target: str) -> bool:
    """Tell whether ``token`` is a valid, unexpired playback token for ``target``."""
    if not token:
        return False
    try:
        payload = unsign(secret, _PURPOSE, token)
    except BadSignature:
        return False
    return isinstance(payload, dict) and payload.get("t") == target

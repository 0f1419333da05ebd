"""Signed playback tokens: expiring ones for private channels and VODs, link keys for unlisted VODs.

A token is bound to one target (``channel:<id>`` or ``vod:<id>``): a token for one channel
does not open another. Players carry it as ``?token=`` on playlist and segment requests.

A *link key* is what makes an unlisted VOD's link unguessable (VOD ids count up, so the id
alone would let anyone walk through them): it never expires, opens only an unlisted VOD (not
a private one), and is the same every time for one VOD, so a shared link keeps working.
"""

from __future__ import annotations

from stagecast.signing import BadSignature, sign, unsign

_PURPOSE = "playback"
_LINK = "link"
DEFAULT_TTL = 6 * 3600.0


def issue(secret: str, target: str, ttl: float = DEFAULT_TTL) -> str:
    """Return a playback token for ``target`` valid for ``ttl`` seconds."""
    return sign(secret, _PURPOSE, {"t": target}, ttl=ttl)


def allows(secret: str, token: str | None, target: str) -> bool:
    """Tell whether ``token`` is a valid, unexpired playback token for ``target``."""
    return _bound(secret, _PURPOSE, token, target)


def link_key(secret: str, target: str) -> str:
    """Return the link key of ``target`` (the same each time; it does not expire)."""
    return sign(secret, _LINK, {"t": target})


def opens_link(secret: str, token: str | None, target: str) -> bool:
    """Tell whether ``token`` is the link key of ``target``."""
    return _bound(secret, _LINK, token, target)


def _bound(secret: str, purpose: str, token: str | None, target: str) -> bool:
    """Tell whether ``token`` was signed for ``purpose`` and ``target`` (and has not expired)."""
    if not token:
        return False
    try:
        payload = unsign(secret, purpose, token)
    except BadSignature:
        return False
    return isinstance(payload, dict) and payload.get("t") == target

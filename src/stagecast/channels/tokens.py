"""Signed playback tokens: expiring ones for private channels and VODs, link keys for unlisted VODs.

A token is bound to one target (``channel:<id>`` or ``vod:<id>``): a token for one channel
does not open another. Players carry it as ``?token=`` on playlist and segment requests.

A *link key* is what makes an unlisted VOD's link unguessable (VOD ids count up, so the id
alone would let anyone walk through them): it never expires, opens only an unlisted VOD (not
a private one), and is the same every time for one VOD, so a shared link keeps working.

``carry`` writes the token (and any other query) into every URI of a playlist served with
it, so a player that was handed one URL keeps the token on every request it makes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from urllib.parse import quote

from stagecast.signing import BadSignature, sign, unsign

_PURPOSE = "playback"
_LINK = "link"
DEFAULT_TTL = 6 * 3600.0


def channel_target(channel_id: int) -> str:
    """Return the target a channel's playback tokens are bound to."""
    return f"channel:{channel_id}"


def vod_target(vod_id: int) -> str:
    """Return the target a VOD's playback tokens and link key are bound to."""
    return f"vod:{vod_id}"


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


_URI_ATTRIBUTE = re.compile(r'URI="([^"]+)"')


def carry(text: str, query: Mapping[str, str | None]) -> str:
    """Return playlist ``text`` with ``query`` (its non-empty items) added to every URI.

    URIs are the lines that are not tags, and every ``URI="..."`` attribute of a tag
    (``EXT-X-MAP``, and the LL-HLS ``EXT-X-PART``, ``EXT-X-PRELOAD-HINT`` and
    ``EXT-X-RENDITION-REPORT``), so a part or a hinted part needs no token of its own.
    """
    kept = "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items() if v)
    if not kept:
        return text
    return rewrite_uris(text, lambda uri: f"{uri}{'&' if '?' in uri else '?'}{kept}")


def rewrite_uris(text: str, change: Callable[[str], str]) -> str:
    """Return playlist ``text`` with every URI replaced by ``change(uri)``.

    URIs are the lines that are not tags, and every ``URI="..."`` attribute of a tag.
    """
    lines = []
    for line in text.splitlines():
        if line and not line.startswith("#"):
            line = change(line)
        elif 'URI="' in line:
            line = _URI_ATTRIBUTE.sub(lambda m: f'URI="{change(m.group(1))}"', line)
        lines.append(line)
    return "\n".join(lines) + "\n"

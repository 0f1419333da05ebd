"""What a hostile client could do to the chat, closed (issue 16 items 9 and 10): invisible
format characters past word filters, ids beyond 64 bits, NUL bytes in a channel slug."""

from __future__ import annotations

import sys
import unicodedata

import httpx
import pytest

from stagecast.chat.filters import FilterRule, FilterSet
from stagecast.chat.messages import clean_body, strip_format
from stagecast.errors import Unprocessable
from tests.chat.conftest import Live, Room, close_code, next_frame, open_socket

FORMAT = [chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cf"]
# Refused outright rather than removed: they reorder how the text around them is shown.
BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
FILTERS = [
    FilterRule(1, "word", "badword", "block"),
    FilterRule(2, "phrase", "buy followers", "hold"),
]


def test_the_format_class_is_what_the_tests_below_cover() -> None:
    """Python's Unicode database lists the format characters the tests iterate over."""
    assert len(FORMAT) > 150
    assert {"\u200b", "\u00ad", "\u2060", "\u200f", "\u061c", "\ufeff"} <= set(FORMAT)


def test_no_format_character_hides_a_word_from_a_block_or_a_hold_filter() -> None:
    """Every Cf code point inside a blocked word or a held phrase: refused or caught, never
    stored with the character in it."""
    rules = FilterSet(FILTERS)
    for char in FORMAT:
        for text, action in ((f"bad{char}word", "block"), (f"buy{char} followers", "hold")):
            try:
                cleaned = clean_body(text, 500)
            except Unprocessable:
                assert char in BIDI, hex(ord(char))
                continue
            assert char not in cleaned, hex(ord(char))
            rule = rules.match(cleaned)
            assert rule is not None, hex(ord(char))
            assert rule.action == action
            # Matching alone, on text that kept the character, catches it too.
            found = rules.match(text)
            assert found is not None, hex(ord(char))


def test_emoji_sequences_keep_their_joiners_and_tags() -> None:
    """A zero-width joiner between emoji and a subdivision flag's tags stay: one glyph each."""
    for sequence in (
        "\U0001f3f3\ufe0f\u200d\U0001f308",  # rainbow flag
        "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # family
        "\U0001f469\U0001f3fd\u200d\u2695\ufe0f",  # health worker, skin tone
        "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",  # Scotland
    ):
        assert strip_format(f"hi {sequence}!") == f"hi {sequence}!"
    assert strip_format("a\u200db \U000e0067x") == "ab x"


def chat(room: Room, tail: str) -> str:
    """Return the path of ``room``'s chat endpoint ``tail``."""
    return f"/api/v1/channels/{room.slug}/chat{tail}"


async def test_every_format_character_meets_the_filters_over_http(
    live: Live, room: Room, http: httpx.AsyncClient
) -> None:
    """Posted with any Cf code point inside, a blocked word is 422 and a held phrase 202."""
    owner, ann = room.auth("owner"), room.auth("ann")
    for rule in FILTERS:
        spec = {"kind": rule.kind, "pattern": rule.pattern, "action": rule.action}
        assert (await http.post(chat(room, "/filters"), json=spec, headers=owner)).is_success
    for char in FORMAT:
        blocked = await http.post(
            chat(room, "/messages"), json={"body": f"bad{char}word"}, headers=ann
        )
        assert blocked.status_code == 422, hex(ord(char))
        expected = "invalid" if char in BIDI else "blocked"
        assert blocked.json()["error"]["code"] == expected, hex(ord(char))
        held = await http.post(
            chat(room, "/messages"), json={"body": f"buy{char} followers"}, headers=ann
        )
        assert held.status_code == (422 if char in BIDI else 202), hex(ord(char))


async def test_format_characters_are_removed_from_what_is_stored(
    live: Live, room: Room, http: httpx.AsyncClient
) -> None:
    """A message and a filter pattern are stored without their invisible characters."""
    posted = await http.post(
        chat(room, "/messages"),
        json={"body": "hi\u200bthere\u2060 \u00ad"},
        headers=room.auth("ann"),
    )
    assert posted.json()["message"]["body"] == "hithere"
    spec = {"kind": "word", "pattern": "\u200bbad\u200dword", "action": "block"}
    added = await http.post(chat(room, "/filters"), json=spec, headers=room.auth("owner"))
    assert added.json()["pattern"] == "badword"
    only = await http.post(
        chat(room, "/messages"), json={"body": "\u200b\u200c"}, headers=room.auth("ann")
    )
    assert only.status_code == 422  # nothing left: an empty message


@pytest.mark.parametrize("number", [2**63, 2**64, 10**30])
async def test_ids_past_64_bits_are_422(
    live: Live, room: Room, http: httpx.AsyncClient, number: int
) -> None:
    """Message, filter and held ids of 2**63 and beyond are 422 on every route, never a 500."""
    owner = room.auth("owner")
    for method, tail in (
        ("DELETE", f"/messages/{number}"),
        ("DELETE", f"/filters/{number}"),
        ("POST", f"/held/{number}/approve"),
        ("POST", f"/held/{number}/reject"),
    ):
        response = await http.request(method, chat(room, tail), headers=owner)
        assert response.status_code == 422, (method, tail)
        assert response.json()["error"]["code"] == "invalid"


async def test_the_largest_id_is_a_404(live: Live, room: Room, http: httpx.AsyncClient) -> None:
    """2**63 - 1 is a valid id that names nothing: 404 on every route."""
    owner, top = room.auth("owner"), 2**63 - 1
    for method, tail in (
        ("DELETE", f"/messages/{top}"),
        ("DELETE", f"/filters/{top}"),
        ("POST", f"/held/{top}/approve"),
        ("POST", f"/held/{top}/reject"),
    ):
        response = await http.request(method, chat(room, tail), headers=owner)
        assert response.status_code == 404, (method, tail)


async def test_a_slug_with_a_nul_is_not_found_on_the_socket_and_over_http(
    live: Live, room: Room, http: httpx.AsyncClient
) -> None:
    """A NUL in the slug closes the socket with 4404 (anonymous or signed in) and is a 404 on
    the chat routes, on PostgreSQL (which refuses NUL in text) as on SQLite."""
    slug = f"{room.slug}%00x"
    for headers in (None, room.auth("ann")):
        ws = await open_socket(f"{live.ws}/api/v1/channels/{slug}/chat/socket", headers)
        assert (await next_frame(ws))["code"] == "not_found"
        assert await close_code(ws) == 4404
    base = f"/api/v1/channels/{slug}/chat"
    for method, tail, body in (
        ("GET", "/messages", None),
        ("GET", "/settings", None),
        ("POST", "/messages", {"body": "hi"}),
        ("GET", "/filters", None),
        ("PUT", "/bans/bob", {}),
    ):
        response = await http.request(method, base + tail, json=body, headers=room.auth("owner"))
        assert response.status_code == 404, (method, tail)

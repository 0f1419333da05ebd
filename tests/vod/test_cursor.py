"""Library cursors: exact round trips, and nothing but our own cursor is accepted."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stagecast.signing import BadSignature
from stagecast.vod import cursor
from stagecast.vod.cursor import Position

SECRET = "test-secret-key"
positions = st.builds(
    Position,
    created_at=st.datetimes(timezones=st.just(UTC)),
    id=st.integers(min_value=1, max_value=2**63 - 1),
)


@given(position=positions, scope=st.text(max_size=40))
def test_a_cursor_round_trips_exactly(position: Position, scope: str) -> None:
    """Any sort key comes back to the microsecond, for the filters it was made for."""
    assert cursor.decode(SECRET, cursor.encode(SECRET, position, scope), scope) == position


@given(position=positions, scope=st.text(max_size=10), other=st.text(max_size=10))
def test_a_cursor_is_bound_to_its_filters(position: Position, scope: str, other: str) -> None:
    """A cursor used with other filters is refused."""
    token = cursor.encode(SECRET, position, scope)
    if other != scope:
        with pytest.raises(BadSignature):
            cursor.decode(SECRET, token, other)


@given(token=st.text(max_size=300))
def test_any_other_text_is_a_bad_signature(token: str) -> None:
    """Garbage never decodes and never raises anything but the 400 error."""
    with pytest.raises(BadSignature):
        cursor.decode(SECRET, token, "scope")


@given(position=positions, index=st.integers(min_value=0), char=st.characters())
def test_a_tampered_cursor_is_refused(position: Position, index: int, char: str) -> None:
    """Changing any character of a cursor makes it invalid."""
    token = cursor.encode(SECRET, position, "s")
    at = index % len(token)
    tampered = token[:at] + char + token[at + 1 :]
    if tampered != token:
        with pytest.raises(BadSignature):
            cursor.decode(SECRET, tampered, "s")


def test_a_cursor_from_another_secret_is_refused() -> None:
    """Cursors are signed with the instance's secret key."""
    token = cursor.encode("other-secret", Position(datetime.now(UTC), 1), "s")
    with pytest.raises(BadSignature):
        cursor.decode(SECRET, token, "s")

"""History cursors: opaque, signed, bound to their list and channel."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stagecast import cursors
from stagecast.errors import BadRequest

SECRET = "test-secret"
KEYS = st.tuples(
    st.integers(min_value=0, max_value=2**62), st.integers(min_value=0, max_value=2**62)
)


@given(key=KEYS, channel=st.integers(min_value=1, max_value=2**40))
def test_a_cursor_gives_back_its_key(key: tuple[int, int], channel: int) -> None:
    """Decoding what was encoded returns the same key."""
    token = cursors.encode(SECRET, "log", channel, key)
    assert cursors.decode(SECRET, "log", channel, token, 2) == key


@given(key=KEYS, position=st.integers(min_value=0), replacement=st.sampled_from("AZaz09-_."))
def test_any_altered_cursor_is_a_400(key: tuple[int, int], position: int, replacement: str) -> None:
    """Changing any character of a cursor makes it a bad request, never another key."""
    token = cursors.encode(SECRET, "history", 7, key)
    index = position % len(token)
    if token[index] == replacement:
        return
    forged = token[:index] + replacement + token[index + 1 :]
    with pytest.raises(BadRequest):
        cursors.decode(SECRET, "history", 7, forged, 2)


def test_cursors_do_not_move_between_channels_lists_or_keys() -> None:
    """A cursor of another channel, another list or another secret is refused."""
    token = cursors.encode(SECRET, "history", 1, (10,))
    with pytest.raises(cursors.BadCursor):
        cursors.decode(SECRET, "history", 2, token, 1)
    with pytest.raises(BadRequest):
        cursors.decode(SECRET, "log", 1, token, 1)
    with pytest.raises(BadRequest):
        cursors.decode("other-secret", "history", 1, token, 1)
    with pytest.raises(cursors.BadCursor):
        cursors.decode(SECRET, "history", 1, token, 2)


@given(garbage=st.text(max_size=200))
def test_garbage_is_a_400(garbage: str) -> None:
    """Arbitrary text is a bad request."""
    with pytest.raises(BadRequest):
        cursors.decode(SECRET, "history", 1, garbage, 1)

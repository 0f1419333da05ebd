"""The chat protocol's frames: their JSON, client input, and what the chat topics carry."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stagecast.chat import frames
from stagecast.chat.errors import SlowConsumer
from stagecast.chat.hub import CHANNEL_TOPIC, ChatEvent
from stagecast.chat.rules import TOPIC, Announcement
from stagecast.errors import TooManyRequests

AT = datetime(2025, 3, 1, 12, 30, 5, 250000, tzinfo=UTC)
LIMIT = 8192

WIRE = [
    (
        frames.Hello("show", 7, "ann", True, None, 0, None, 500, 25.0),
        '{"type":"hello","channel":"show","last_id":7,"user":"ann","can_post":true,'
        '"moderator":null,"slow_mode":0,"timeout_until":null,"max_length":500,"heartbeat":25.0}',
    ),
    (
        frames.Hello(
            "show", 0, "mod", True, frames.Powers(True, True, False, False), 5, AT, 500, 0.2
        ),
        '{"type":"hello","channel":"show","last_id":0,"user":"mod","can_post":true,'
        '"moderator":{"delete":true,"timeout":true,"ban":false,"filters":false},"slow_mode":5,'
        '"timeout_until":"2025-03-01T12:30:05.250000+00:00","max_length":500,"heartbeat":0.2}',
    ),
    (
        frames.Message(3, "ann", "héllo <b>", AT, "n1"),
        '{"type":"message","id":3,"author":"ann","body":"héllo <b>",'
        '"sent_at":"2025-03-01T12:30:05.250000+00:00","nonce":"n1"}',
    ),
    (frames.Resumed(3, 2), '{"type":"resumed","last_id":3,"count":2}'),
    (frames.Reset(9), '{"type":"reset","last_id":9}'),
    (frames.Deleted(1), '{"type":"deleted","id":1}'),
    (frames.Held("h1"), '{"type":"held","nonce":"h1","message":"held for review"}'),
    (frames.Timeout(None), '{"type":"timeout","until":null}'),
    (frames.Settings(30), '{"type":"settings","slow_mode":30}'),
    (
        frames.Review(4, "ann", "a link", AT, "phrase filter"),
        '{"type":"review","id":4,"author":"ann","body":"a link",'
        '"sent_at":"2025-03-01T12:30:05.250000+00:00","reason":"phrase filter"}',
    ),
    (frames.Reviewed(4, "approved"), '{"type":"reviewed","id":4,"outcome":"approved"}'),
    (frames.Ping(), '{"type":"ping"}'),
    (frames.Pong(), '{"type":"pong"}'),
]
FANOUT: list[frames.Fanout] = [
    frames.Message(3, "ann", "héllo", AT, None),
    frames.Deleted(3),
    frames.Review(4, "ann", "a link", AT, "word filter"),
    frames.Reviewed(4, "rejected"),
]


def through_the_bus(message: dict[str, object]) -> dict[str, object]:
    """Return ``message`` as a subscriber receives it (both buses carry JSON)."""
    received = orjson.loads(orjson.dumps(message))
    assert isinstance(received, dict)
    return received


@pytest.mark.parametrize(("frame", "text"), WIRE, ids=[type(f).__name__ for f, _ in WIRE])
def test_server_frames_encode_to_the_documented_json(frame: frames.ServerFrame, text: str) -> None:
    """Each server frame is compact JSON, ``type`` first, fields in the README's order."""
    assert frames.encode(frame) == text


def test_an_error_frame_carries_retry_after_and_nonce_only_when_it_has_them() -> None:
    """Error frames leave out absent optional fields and round retry_after to milliseconds."""
    plain = frames.Error.of(SlowConsumer("read faster"))
    assert frames.encode(plain) == '{"type":"error","code":"slow_consumer","message":"read faster"}'
    limited = frames.Error.of(TooManyRequests("slow down", retry_after=1.23456), "n1")
    assert json.loads(frames.encode(limited)) == {
        "type": "error",
        "code": "rate_limited",
        "message": "slow down",
        "retry_after": 1.235,
        "nonce": "n1",
    }


@pytest.mark.parametrize("frame", FANOUT, ids=[type(f).__name__ for f in FANOUT])
def test_fanout_frames_cross_the_bus_unchanged(frame: frames.Fanout) -> None:
    """A frame published on ``chat.<id>`` decodes to the same frame and the same JSON."""
    event = CHANNEL_TOPIC.decode(through_the_bus(CHANNEL_TOPIC.encode(ChatEvent(frame))))
    assert event == ChatEvent(frame)
    assert frames.encode(event.frame) == frames.encode(frame)


@pytest.mark.parametrize(
    "message",
    [
        {"type": "message", "id": 1, "author": "a", "body": "b", "sent_at": "x", "nonce": None},
        {"frame": {"type": "message", "id": "one", "author": "a", "body": "b", "sent_at": "x"}},
        {"frame": {"type": "message", "id": 1, "author": 5, "body": "b", "sent_at": AT}},
        {"frame": {"type": "deleted"}},
        {"frame": {"type": "hello", "id": 1}},
        {"frame": {"type": "reviewed", "id": 1, "outcome": "maybe"}},
        {"frame": None},
        {},
    ],
)
def test_a_malformed_chat_bus_message_is_refused(message: dict[str, object]) -> None:
    """Decoding a message that is not a ChatEvent raises ValueError (the room skips it)."""
    with pytest.raises(ValueError, match="validation error"):
        CHANNEL_TOPIC.decode(through_the_bus(message))


def test_moderation_announcements_cross_the_bus_unchanged() -> None:
    """Bans, timeouts, releases and settings changes decode to what was announced."""
    until = AT + timedelta(seconds=120)
    for sent in (
        Announcement(7, 3, banned=True),
        Announcement(7, 3, until=until),
        Announcement(7, 3),
        Announcement(7, slow_mode=30),
        Announcement(7),
    ):
        assert TOPIC.decode(through_the_bus(TOPIC.encode(sent))) == sent
    with pytest.raises(ValueError, match="validation error"):
        TOPIC.decode({"channel_id": "seven"})


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ('{"type": "post", "body": "hi", "nonce": "n1"}', frames.Post("hi", "n1")),
        ('{"type": "post", "body": 7, "extra": 1}', frames.Post(7, None)),
        ('{"type": "ping"}', frames.Ping()),
        ('{"type": "pong"}', frames.Pong()),
    ],
)
def test_client_frames_parse_to_their_types(text: str, parsed: frames.ClientFrame) -> None:
    """Known client frames become their dataclass; the post's fields are left to the service."""
    assert frames.parse(text, LIMIT) == parsed


@pytest.mark.parametrize(
    ("text", "code"),
    [
        (None, "invalid_frame"),
        ("x" * (LIMIT + 1), "frame_too_large"),
        ("é" * (LIMIT // 2 + 1), "frame_too_large"),  # bytes, not code points
        ("{not json", "invalid_json"),
        ("[" * 5000, "invalid_json"),  # deeper than the JSON parser recurses
        ("[1, 2]", "invalid_frame"),
        ('{"body": "no type"}', "invalid_frame"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": ["ping"]}', "unknown_type"),
        ('{"type": null}', "unknown_type"),
    ],
)
def test_bad_client_input_becomes_an_error_frame(text: str | None, code: str) -> None:
    """Binary, oversized, non-JSON and unknown frames are answered with an error, not raised."""
    parsed = frames.parse(text, LIMIT)
    assert isinstance(parsed, frames.Error)
    assert parsed.code == code


def test_a_frame_far_over_the_limit_closes_the_socket() -> None:
    """Past eight times the soft limit the answer is a 1009 close, not an error frame."""
    assert frames.parse("x" * (LIMIT * 8 + 1), LIMIT) == frames.Close(1009, "frame too large")


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(max_size=200),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=8),
            lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner),
            max_leaves=20,
        ).map(json.dumps),
        st.dictionaries(st.sampled_from(["type", "body", "nonce"]), st.text(max_size=8)).map(
            json.dumps
        ),
    )
)
def test_parse_never_raises(text: str) -> None:
    """Whatever a client sends, parse returns a client frame, an error frame or a close."""
    assert isinstance(
        frames.parse(text, LIMIT), frames.Post | frames.Ping | frames.Pong | frames.Error
    )


def test_a_post_echoes_only_a_plausible_nonce() -> None:
    """The nonce repeated in an answer is the client's string, and only if it is short enough."""
    assert frames.Post("x", "n1").echo == "n1"
    assert frames.Post("x", "n" * 65).echo is None
    assert frames.Post("x", 7).echo is None

"""Typed topics: one name per pattern and key, payloads that survive the bus and are checked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import pytest

from stagecast.bus import MemoryBus
from stagecast.bus.topics import Topic


class Colour(StrEnum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True)
class Inner:
    at: datetime


@dataclass(frozen=True)
class Painted:
    channel_id: int
    colour: Colour
    inner: Inner
    note: str | None = None


PAINTED: Topic[Painted] = Topic("paint.{}", Painted)


def test_the_name_takes_exactly_the_keys_its_pattern_has() -> None:
    """``paint.{}`` needs one key; a fixed name none; any other count is refused."""
    assert PAINTED.name(42) == "paint.42"
    assert Topic("fixed", Painted).name() == "fixed"
    with pytest.raises(ValueError, match="takes 1 key"):
        PAINTED.name()
    with pytest.raises(ValueError, match="takes 0 key"):
        Topic("fixed", Painted).name(1)


def test_a_topic_needs_a_dataclass_payload() -> None:
    """A payload type that is not a dataclass is refused when the topic is made."""
    with pytest.raises(TypeError, match="dataclass"):
        Topic("x.{}", dict)


async def test_a_value_comes_back_equal_through_the_bus() -> None:
    """Enums, nested dataclasses, datetimes and None survive JSON and come back typed."""
    bus = MemoryBus()
    subscription = await PAINTED.subscribe(bus, 7)
    sent = Painted(7, Colour.BLUE, Inner(datetime(2026, 12, 4, 1, 2, 3, tzinfo=UTC)))
    await PAINTED.publish(bus, sent, 7)
    received = await subscription.get(timeout=1)
    assert isinstance(received, dict)
    assert PAINTED.decode(received) == sent
    await bus.close()


@pytest.mark.parametrize(
    "message",
    [
        {},  # nothing
        {"channel_id": "seven", "colour": "red", "inner": {"at": "2026-12-04T00:00:00Z"}},
        {"channel_id": 7, "colour": "green", "inner": {"at": "2026-12-04T00:00:00Z"}},
        {"channel_id": 7, "colour": "red", "inner": {"at": "yesterday"}},
        {"channel_id": 7, "colour": "red"},  # a required field missing
    ],
)
def test_a_malformed_message_is_refused_with_value_error(message: dict[str, object]) -> None:
    """Wrong types, unknown enum values, bad datetimes and missing fields raise ValueError."""
    with pytest.raises(ValueError, match="validation error"):
        PAINTED.decode(message)


def test_batch_names_every_value_by_its_key() -> None:
    """``batch`` gives ``publish_many`` one (name, message) pair per value, in order."""
    at = Inner(datetime(2026, 1, 1, tzinfo=UTC))
    pairs = PAINTED.batch([(Painted(1, Colour.RED, at), 1), (Painted(2, Colour.RED, at), 2)])
    assert [name for name, _ in pairs] == ["paint.1", "paint.2"]
    assert [message["channel_id"] for _, message in pairs] == [1, 2]

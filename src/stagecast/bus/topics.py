"""Typed topics: what crosses the bus has a name built in one place and a frozen payload type.

The package that publishes on a topic owns its ``Topic``: the name pattern and the payload, a
frozen dataclass. Producers publish values of that type; consumers read them back with
``decode``, which checks every field (types, enums, datetimes) and raises ``ValueError`` for a
message that is not one, so mypy sees what crosses a package line and a malformed message never
reaches code that reads its fields.

Payload fields travel as JSON through every bus (orjson writes dataclasses, enums and datetimes
natively), so a nested frozen dataclass is fine as a field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Generic, TypeVar

from pydantic import TypeAdapter

from stagecast.bus.base import Bus, Payload, Subscription

P = TypeVar("P")


class Topic(Generic[P]):
    """A family of bus topics named by ``pattern`` (``"live.{}"``: one per channel id, or a
    fixed name) whose messages are ``payload`` values."""

    def __init__(self, pattern: str, payload: type[P]) -> None:
        if not dataclasses.is_dataclass(payload):
            raise TypeError(f"a topic's payload must be a dataclass, not {payload!r}")
        self.pattern = pattern
        self.payload = payload
        self._fields = tuple(f.name for f in dataclasses.fields(payload))
        self._adapter: TypeAdapter[P] = TypeAdapter(payload)

    def __repr__(self) -> str:
        return f"Topic({self.pattern!r}, {self.payload.__name__})"

    def name(self, *key: int | str) -> str:
        """Return the topic's name for ``key`` (a channel id), or the fixed name."""
        if self.pattern.count("{}") != len(key):
            raise ValueError(f"topic {self.pattern!r} takes {self.pattern.count('{}')} key(s)")
        return self.pattern.format(*key)

    def encode(self, value: P) -> Payload:
        """Return ``value`` as the JSON object the bus carries (one level: orjson does the rest)."""
        return {name: getattr(value, name) for name in self._fields}

    def decode(self, message: Payload) -> P:
        """Read a message back. Raises ValueError if it is not a valid ``payload``."""
        return self._adapter.validate_python(message)

    async def publish(self, bus: Bus, value: P, *key: int | str) -> None:
        """Publish ``value`` on this topic (for ``key``). Raises BusUnavailable."""
        await bus.publish(self.name(*key), self.encode(value))

    async def subscribe(self, bus: Bus, *key: int | str, maxsize: int = 1024) -> Subscription:
        """Subscribe to this topic (for ``key``); read its messages with ``decode``."""
        return await bus.subscribe(self.name(*key), maxsize=maxsize)

    def batch(self, values: Sequence[tuple[P, int | str]]) -> list[tuple[str, Payload]]:
        """Return ``(name, message)`` pairs of ``(value, key)`` for ``Bus.publish_many``."""
        return [(self.name(key), self.encode(value)) for value, key in values]

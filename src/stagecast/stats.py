"""How a component describes the counters it keeps, for the Prometheus exporter to publish.

The component owns what its counters mean (names, which go up and down, help texts); the web
layer (``stagecast.web.prometheus``) owns exporting them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class StatsSource:
    """Counters a component keeps, exported as ``stagecast_<name>_<key>``.

    ``read`` returns the current values; keys in ``gauges`` go up and down (connected
    sockets), every other key is a monotonic counter (exported with ``_total``).
    """

    name: str
    read: Callable[[], Mapping[str, float]]
    gauges: frozenset[str] = frozenset()
    help: Mapping[str, str] = field(default_factory=dict)

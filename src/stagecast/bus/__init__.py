"""Pub/sub between the parts of one process, or between processes through Redis."""

from stagecast.bus.base import Bus, BusUnavailable, Gap, Subscription
from stagecast.bus.memory import MemoryBus
from stagecast.bus.redis import RedisBus

__all__ = ["Bus", "BusUnavailable", "Gap", "MemoryBus", "RedisBus", "Subscription"]

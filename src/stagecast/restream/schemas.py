"""Wire formats of the restream API: destinations, each with the status of its push."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from stagecast.restream.runner import PushStatus
from stagecast.restream.service import Destination, masked


class DestinationIn(BaseModel):
    """A new destination."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=64, description="A label, e.g. YouTube.")
    url: str = Field(max_length=512, description="rtmp:// or rtmps:// server URL of the platform.")
    stream_key: str = Field(max_length=512, description="Stored; never shown back in full.")
    enabled: bool = True


class DestinationPatchIn(BaseModel):
    """Changes to a destination (omitted fields stay)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=64)
    url: str | None = Field(default=None, max_length=512)
    stream_key: str | None = Field(default=None, max_length=512)
    enabled: bool | None = None


class PushOut(BaseModel):
    """Where the push to a destination is, while (or since) the channel was live."""

    state: str = Field(description="connecting, live, retrying or stopped")
    last_error: str | None
    bytes_sent: int
    attempts: int
    session_id: int

    @classmethod
    def of(cls, status: PushStatus) -> PushOut:
        """Build from the runner's status."""
        return cls(
            state=status.state.value,
            last_error=status.last_error,
            bytes_sent=status.bytes_sent,
            attempts=status.attempts,
            session_id=status.session_id,
        )


class DestinationOut(BaseModel):
    """A destination, its stream key masked, and its push's latest status (None: none yet)."""

    id: int
    name: str
    url: str
    stream_key: str = Field(description="Masked: only the last four characters are shown.")
    enabled: bool
    created_at: datetime
    push: PushOut | None

    @classmethod
    def of(cls, destination: Destination, status: PushStatus | None) -> DestinationOut:
        """Build from the domain value and the push's status."""
        return cls(
            id=destination.id,
            name=destination.name,
            url=destination.url,
            stream_key=masked(destination.stream_key),
            enabled=destination.enabled,
            created_at=destination.created_at,
            push=PushOut.of(status) if status is not None else None,
        )


class DestinationList(BaseModel):
    """A channel's destinations, oldest first."""

    items: list[DestinationOut]

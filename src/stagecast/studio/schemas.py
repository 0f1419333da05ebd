"""Wire formats of the studio API: heartbeats, history and sessions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from stagecast.wire import FromRecord

ViewerId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{8,64}$")]


class HeartbeatIn(BaseModel):
    """A viewer page saying it still plays: its playback session id."""

    model_config = ConfigDict(extra="forbid")

    vs: ViewerId = Field(description="The page's playback session id (also passed as ?vs=).")


class HeartbeatOut(BaseModel):
    """When to send the next heartbeat."""

    session_id: int
    interval: float = Field(description="Seconds until the next heartbeat is due.")


class SampleOut(FromRecord):
    """One point of a session's history (every 10 s while live)."""

    sampled_at: datetime
    viewers: int
    bitrate_kbps: float | None
    verdict: str


class SampleList(BaseModel):
    """A page of samples, oldest first; pass ``next`` as ``after`` for the rest."""

    session_id: int
    items: list[SampleOut]
    next: datetime | None = Field(description="Set when more samples may follow.")


class SessionOut(FromRecord):
    """A broadcast of the channel."""

    id: int
    state: str
    title: str
    started_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None


class SessionList(BaseModel):
    """A page of sessions, newest first (keyset: pass ``next_cursor`` as ``cursor``)."""

    items: list[SessionOut]
    has_more: bool
    next_cursor: str | None

"""Wire formats of the studio API: heartbeats, history, sessions, webhooks and deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from stagecast.metrics.webhooks import Webhook
from stagecast.wire import FromRecord

ViewerId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{8,64}$")]
EventName = Annotated[str, Field(max_length=32)]


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


class WebhookIn(BaseModel):
    """A new webhook."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2048, description="http:// or https:// URL to POST events to.")
    events: list[EventName] = Field(
        default=["stream.started", "stream.ended", "vod.ready"], min_length=1, max_length=3
    )


class WebhookPatchIn(BaseModel):
    """Changes to a webhook (omitted fields stay)."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, max_length=2048)
    events: list[EventName] | None = Field(default=None, min_length=1, max_length=3)
    enabled: bool | None = None


class WebhookOut(BaseModel):
    """A webhook (without its secret)."""

    id: int
    url: str
    events: list[str]
    enabled: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, hook: Webhook) -> WebhookOut:
        """Build from the domain value."""
        return cls(
            id=hook.id,
            url=hook.url,
            events=list(hook.events),
            enabled=hook.enabled,
            created_at=hook.created_at,
            updated_at=hook.updated_at,
        )


class WebhookWithSecretOut(WebhookOut):
    """A webhook just created: the signing secret is shown only here."""

    secret: str = Field(description="HMAC-SHA256 key of the Stagecast-Signature header.")


class WebhookList(BaseModel):
    """The channel's webhooks."""

    items: list[WebhookOut]


class AttemptOut(BaseModel):
    """One try of a delivery."""

    attempt: int
    attempted_at: datetime
    status: int | None
    error: str | None
    duration_ms: int


class DeliveryOut(BaseModel):
    """A delivery of one event to one webhook, with its attempts."""

    id: int
    event: str
    state: str = Field(description="pending, delivering, delivered or failed")
    attempts: int
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None
    attempt_log: list[AttemptOut]


class DeliveryList(BaseModel):
    """A page of deliveries, newest first (keyset: pass ``next_cursor`` as ``cursor``)."""

    items: list[DeliveryOut]
    has_more: bool
    next_cursor: str | None

"""Wire formats of the webhook API: webhooks, deliveries and their attempts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from stagecast.webhooks.service import Webhook

EventName = Annotated[str, Field(max_length=32)]


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

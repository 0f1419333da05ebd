"""Wire formats of the chat REST endpoints. Unknown fields are refused.

The socket's frames are in ``chat.frames``; the README documents both.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from stagecast.chat.filters import MAX_PATTERN, FilterRule
from stagecast.chat.moderation import (
    MAX_SLOW_MODE,
    MAX_TIMEOUT,
    PURGE_LIMIT,
    PURGE_WINDOW,
    RestrictionEntry,
)
from stagecast.wire import FromRecord


class MessageOut(FromRecord):
    """A chat message. ``body`` is raw text: escape it when rendering."""

    id: int = Field(description="Per-channel sequence number; resume with last_id")
    author: str
    body: str
    sent_at: datetime
    session_id: int | None = Field(description="Live session on air when it was sent")
    media_time: float | None = Field(description="Seconds since that session started")


class MessagePage(BaseModel):
    """A page of history, newest first."""

    items: list[MessageOut]
    has_more: bool
    next_before: str | None = Field(description="Cursor of the next (older) page")
    total: int | None = Field(
        default=None, description="Optional, always null: no total is computed"
    )


class PostIn(BaseModel):
    """A message to post. ``nonce`` makes a retry safe (same nonce, same message)."""

    model_config = ConfigDict(extra="forbid")

    body: str = Field(max_length=4000)
    nonce: str | None = Field(default=None, max_length=64)


class PostOut(BaseModel):
    """What became of a post: stored, or held for review by a filter."""

    status: Literal["posted", "held"]
    message: MessageOut | None = None
    held_id: int | None = None


class BanIn(BaseModel):
    """Why someone is banned, and whether their recent messages go with them."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=200)
    remove_messages: bool = Field(
        default=False,
        description=(
            f"Also delete their messages of the last {PURGE_WINDOW // 3600} hours "
            f"(the newest {PURGE_LIMIT}); needs the delete permission"
        ),
    )


class TimeoutIn(BaseModel):
    """How long someone is timed out, and why."""

    model_config = ConfigDict(extra="forbid")

    seconds: int = Field(ge=1, le=MAX_TIMEOUT)
    reason: str = Field(default="", max_length=200)


class RestrictionOut(BaseModel):
    """A ban (``expires_at`` null) or a running timeout."""

    username: str
    kind: Literal["ban", "timeout"]
    expires_at: datetime | None
    reason: str = ""
    created_by: str | None = None
    created_at: datetime | None = None

    @classmethod
    def of(cls, entry: RestrictionEntry) -> RestrictionOut:
        """Shape a listed restriction for the wire."""
        return cls(
            username=entry.username,
            kind="ban" if entry.expires_at is None else "timeout",
            expires_at=entry.expires_at,
            reason=entry.reason,
            created_by=entry.created_by,
            created_at=entry.created_at,
        )


class BanOut(RestrictionOut):
    """A ban just made, and the ids of the messages removed with it (oldest first)."""

    removed_messages: list[int] = Field(default_factory=list)


class RestrictionPage(BaseModel):
    """Bans and running timeouts, newest first."""

    items: list[RestrictionOut]
    next_before: str | None


class ChatSettingsIn(BaseModel):
    """Changes to a channel's chat; omitted fields stay as they are."""

    model_config = ConfigDict(extra="forbid")

    slow_mode_seconds: int | None = Field(default=None, ge=0, le=MAX_SLOW_MODE)
    anonymous_read: bool | None = None


class ChatSettingsOut(BaseModel):
    """A channel's chat settings."""

    slow_mode_seconds: int
    anonymous_read: bool


class FilterIn(BaseModel):
    """A word filter: a literal word, a literal phrase, or an RE2 pattern."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["word", "phrase", "pattern"]
    pattern: str = Field(min_length=1, max_length=MAX_PATTERN)
    action: Literal["block", "hold"] = "block"


class FilterOut(BaseModel):
    """A word filter of the channel."""

    id: int
    kind: str
    pattern: str
    action: str

    @classmethod
    def of(cls, rule: FilterRule) -> FilterOut:
        """Shape a filter for the wire."""
        return cls(id=rule.id, kind=rule.kind, pattern=rule.pattern, action=rule.action)


class FilterList(BaseModel):
    """The channel's word filters, oldest first."""

    items: list[FilterOut]


class HeldOut(FromRecord):
    """A message waiting for review."""

    id: int
    author: str
    body: str
    sent_at: datetime
    filter_id: int | None


class HeldPage(BaseModel):
    """Held messages, oldest first."""

    items: list[HeldOut]
    next_after: str | None


class DecisionOut(BaseModel):
    """The outcome of a review."""

    status: Literal["approved", "rejected"]
    message: MessageOut | None = None


class LogEntryOut(FromRecord):
    """One moderation action."""

    id: int
    action: str
    actor: str | None
    target: str | None
    message_id: int | None
    detail: str
    created_at: datetime


class LogPage(BaseModel):
    """The moderation log, newest first."""

    items: list[LogEntryOut]
    next_before: str | None


class ReplayMessageOut(FromRecord):
    """A message of a VOD's chat replay. ``body`` is raw text: escape it when rendering."""

    id: int = Field(description="Per-channel sequence number")
    author: str
    body: str
    sent_at: datetime
    media_time: float = Field(description="Seconds into the broadcast (and its VOD) it was sent")


class ReplayPage(BaseModel):
    """A page of a VOD's chat replay, in ``(media_time, id)`` order."""

    items: list[ReplayMessageOut]
    has_more: bool
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page")

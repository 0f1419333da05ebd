"""Wire formats of the channel endpoints. Unknown fields are refused."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from stagecast.channels import tokens
from stagecast.channels.models import NEXT_INFO_MAX
from stagecast.channels.service import Channel, Moderator

Visibility = Literal["public", "unlisted", "private"]
Profile = Literal["passthrough", "abr"]
Latency = Literal["low", "standard"]

_NEXT = (
    'What you say about the next stream ("Fridays 20:00 UTC"), shown to viewers on the '
    "channel page while it is offline; empty: nothing shown."
)
_LATENCY = (
    "low: Low-Latency HLS (parts of about a third of a second, about 2 s behind live); "
    "standard: whole segments (about 4-6 s behind). Applies from the next session."
)


class ChannelCreateIn(BaseModel):
    """A new channel."""

    model_config = ConfigDict(extra="forbid")

    slug: str = Field(min_length=3, max_length=40)
    title: str | None = Field(default=None, min_length=1, max_length=140)
    description: str = Field(default="", max_length=2000)
    visibility: Visibility = "public"
    profile: Profile = "passthrough"
    dvr_window_seconds: int = Field(default=0, ge=0, le=21600)
    latency: Latency = Field(default="low", description=_LATENCY)


class ChannelPatchIn(BaseModel):
    """Changes to a channel; omitted fields stay as they are."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, min_length=1, max_length=140)
    description: str | None = Field(default=None, max_length=2000)
    visibility: Visibility | None = None
    profile: Profile | None = None
    dvr_window_seconds: int | None = Field(default=None, ge=0, le=21600)
    latency: Latency | None = Field(default=None, description=_LATENCY)
    next_info: str | None = Field(default=None, max_length=NEXT_INFO_MAX, description=_NEXT)


class ModeratorIn(BaseModel):
    """What a moderator may do."""

    model_config = ConfigDict(extra="forbid")

    can_delete: bool = True
    can_timeout: bool = True
    can_ban: bool = True
    can_manage_filters: bool = False


class ChannelOut(BaseModel):
    """A channel as its owner sees it."""

    id: int
    slug: str
    owner: str
    title: str
    description: str
    visibility: Visibility
    profile: Profile
    dvr_window_seconds: int
    latency: Latency = Field(description=_LATENCY)
    next_info: str = Field(description=_NEXT)
    rtmp_url: str
    key_rotated_at: datetime
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, found: Channel, rtmp_url: str) -> ChannelOut:
        """Shape a channel for the wire; ``rtmp_url`` is the encoder's server URL."""
        return cls(
            rtmp_url=rtmp_url,
            id=found.id,
            slug=found.slug,
            owner=found.owner,
            title=found.title,
            description=found.description,
            visibility=found.visibility,
            profile=found.profile,
            dvr_window_seconds=found.dvr_window_seconds,
            latency=found.latency,
            next_info=found.next_info,
            key_rotated_at=found.key_rotated_at,
            created_at=found.created_at,
            updated_at=found.updated_at,
        )


class ChannelWithKeyOut(BaseModel):
    """A channel and its stream key (only right after creation or rotation)."""

    channel: ChannelOut
    stream_key: str
    rtmp_url: str


class ChannelList(BaseModel):
    """The caller's channels."""

    items: list[ChannelOut]


class ModeratorOut(BaseModel):
    """A moderator and their permissions."""

    username: str
    can_delete: bool
    can_timeout: bool
    can_ban: bool
    can_manage_filters: bool
    created_at: datetime

    @classmethod
    def of(cls, moderator: Moderator) -> ModeratorOut:
        """Shape a moderator for the wire."""
        g = moderator.grant
        return cls(
            username=moderator.username,
            can_delete=g.can_delete,
            can_timeout=g.can_timeout,
            can_ban=g.can_ban,
            can_manage_filters=g.can_manage_filters,
            created_at=moderator.created_at,
        )


class ModeratorList(BaseModel):
    """A channel's moderators."""

    items: list[ModeratorOut]


class PlaybackTokenIn(BaseModel):
    """How long a new playback link should work."""

    model_config = ConfigDict(extra="forbid")

    hours: float = Field(default=6.0, gt=0, le=24 * 30)


class PlaybackTokenOut(BaseModel):
    """A signed, expiring link to a private channel or VOD: the page and the playlist."""

    token: str
    expires_in: int
    watch_url: str
    playback_url: str

    @classmethod
    def signed(
        cls, secret: str, target: str, body: PlaybackTokenIn, *, page: str, playlist: str
    ) -> PlaybackTokenOut:
        """Sign a token for ``target`` valid ``body.hours``; return it with both its URLs."""
        ttl = body.hours * 3600
        token = tokens.issue(secret, target, ttl)
        return cls(
            token=token,
            expires_in=int(ttl),
            watch_url=f"{page}?token={token}",
            playback_url=f"{playlist}?token={token}",
        )

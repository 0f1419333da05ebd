"""Wire formats of the VOD endpoints. Unknown fields are refused."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from stagecast.channels.tokens import link_key, vod_target
from stagecast.vod.library import Page, Vod

Status = Literal["processing", "ready", "failed"]
VodVisibility = Literal["inherit", "public", "unlisted", "private"]
Visibility = Literal["public", "unlisted", "private"]

TOTAL_DOC = (
    "Exact number of VODs matching the filters (all pages), read from counters that are "
    "updated in the same transaction as every insert, status change and delete. Null when "
    "no exact count is cheap: with a title search, and on public channel lists."
)


def playback_url(vod_id: int) -> str:
    """Return the master playlist URL of a VOD."""
    return f"/hls/vods/{vod_id}/master.m3u8"


def thumbnail_url(vod_id: int) -> str:
    """Return the thumbnail URL of a VOD."""
    return f"/hls/vods/{vod_id}/thumbnail.jpg"


def page_url(vod_id: int) -> str:
    """Return the watch page URL of a VOD."""
    return f"/v/{vod_id}"


class VodPatchIn(BaseModel):
    """Changes to a VOD; omitted fields stay as they are."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, min_length=1, max_length=140)
    description: str | None = Field(default=None, max_length=2000)
    visibility: VodVisibility | None = Field(
        default=None, description="'inherit' follows the channel's visibility."
    )


class PublicVodOut(BaseModel):
    """A VOD as a viewer sees it."""

    id: int
    channel: str
    title: str
    description: str
    duration_seconds: float | None
    started_at: datetime | None
    created_at: datetime
    playback_url: str
    page_url: str
    thumbnail_url: str | None

    @classmethod
    def of(cls, found: Vod) -> PublicVodOut:
        """Shape a VOD for viewers."""
        return cls(
            id=found.id,
            channel=found.channel_slug,
            title=found.title,
            description=found.description,
            duration_seconds=found.duration,
            started_at=found.started_at,
            created_at=found.created_at,
            playback_url=playback_url(found.id),
            page_url=page_url(found.id),
            thumbnail_url=thumbnail_url(found.id) if found.thumbnail_path else None,
        )


class VodOut(PublicVodOut):
    """A VOD as its owner sees it in the studio.

    For an unlisted VOD, ``page_url``, ``playback_url`` and ``thumbnail_url`` carry its link key
    (``?token=``): ``page_url`` is the link to share. Without the key the VOD is a 404.
    """

    visibility: VodVisibility
    effective_visibility: Visibility
    status: Status
    failure_reason: str | None
    ended_at: datetime
    byte_size: int | None
    updated_at: datetime

    @classmethod
    def for_owner(cls, found: Vod, secret: str) -> VodOut:
        """Shape a VOD for its owner: an unlisted VOD's URLs carry its link key."""
        urls = PublicVodOut.of(found).model_dump()
        if found.effective_visibility == "unlisted":
            suffix = f"?token={link_key(secret, vod_target(found.id))}"
            for name in ("playback_url", "page_url", "thumbnail_url"):
                if urls[name] is not None:
                    urls[name] += suffix
        return cls(
            **urls,
            visibility=found.visibility,
            effective_visibility=found.effective_visibility,
            status=found.status,
            failure_reason=found.failure_reason,
            ended_at=found.ended_at,
            byte_size=found.byte_size,
            updated_at=found.updated_at,
        )


class VodPage(BaseModel):
    """One page of the studio library, newest first."""

    items: list[VodOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")
    has_more: bool
    total: int | None = Field(description=TOTAL_DOC)
    total_exact: bool = Field(description="True when `total` is present: it is then exact.")

    @classmethod
    def of(cls, page: Page, secret: str) -> VodPage:
        """Shape a library page."""
        return cls(
            items=[VodOut.for_owner(v, secret) for v in page.items],
            next_cursor=page.next_cursor,
            has_more=page.has_more,
            total=page.total,
            total_exact=page.total is not None,
        )


class PublicVodPage(BaseModel):
    """One page of a channel's public VODs, newest first."""

    items: list[PublicVodOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")
    has_more: bool
    total: int | None = Field(default=None, description=TOTAL_DOC)
    total_exact: bool = False

    @classmethod
    def of(cls, page: Page) -> PublicVodPage:
        """Shape a public page."""
        return cls(
            items=[PublicVodOut.of(v) for v in page.items],
            next_cursor=page.next_cursor,
            has_more=page.has_more,
        )

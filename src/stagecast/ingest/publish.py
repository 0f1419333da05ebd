"""RTMP publishers into live sessions: key check on publish, media into the session's feed."""

from __future__ import annotations

import logging

from stagecast.channels.service import NotBroadcasting, verify_stream_key
from stagecast.db import Database
from stagecast.errors import StagecastError
from stagecast.ingest.rtmp.handler import BAD_CONNECTION, BAD_NAME
from stagecast.ingest.rtmp.server import PublisherControl, PublishRefused
from stagecast.live.manager import LiveManager
from stagecast.live.packaging import FlvFeed
from stagecast.live.service import AlreadyLive
from stagecast.live.session import LiveSession

log = logging.getLogger(__name__)

APPS = ("live",)


class RtmpPublisher:
    """One connected encoder: forwards its media to the session's FLV feed."""

    def __init__(self, feed: FlvFeed, manager: LiveManager, session: LiveSession) -> None:
        self._feed = feed
        self._manager = manager
        self._session = session
        self._closed = False

    async def on_metadata(self, metadata: dict[str, object]) -> None:
        """Remember the stream's metadata (size, codecs)."""
        await self._feed.metadata(metadata)

    async def on_audio(self, timestamp_ms: int, payload: bytes) -> None:
        """Forward an audio message."""
        await self._feed.audio(timestamp_ms, payload)

    async def on_video(self, timestamp_ms: int, payload: bytes) -> None:
        """Forward a video message."""
        await self._feed.video(timestamp_ms, payload)

    async def on_close(self, reason: str) -> None:
        """Flush the last segment and start the session's grace window."""
        if self._closed:
            return
        self._closed = True
        await self._feed.close()
        await self._manager.release(self._session, reason)


class RtmpIngest:
    """The RTMP server's publish handler: O(1) key check, one session per channel."""

    def __init__(
        self,
        db: Database,
        manager: LiveManager,
        *,
        ffmpeg: str,
        segment_seconds: float,
    ) -> None:
        self._db = db
        self._manager = manager
        self._ffmpeg = ffmpeg
        self._segment_seconds = segment_seconds

    async def open_publish(
        self, app: str, stream_key: str, control: PublisherControl
    ) -> RtmpPublisher:
        """Accept a publisher whose key opens a channel that is not already live."""
        if app.strip("/") not in APPS:
            raise PublishRefused(BAD_NAME, f"unknown application {app!r}; publish to /live")
        try:
            match = await verify_stream_key(self._db, stream_key)
        except NotBroadcasting as exc:
            raise PublishRefused(BAD_NAME, exc.message) from exc
        except StagecastError as exc:
            raise PublishRefused(BAD_CONNECTION, "service unavailable, try again") from exc
        if match is None:
            raise PublishRefused(BAD_NAME, "invalid stream key")
        try:
            session = await self._manager.acquire(match, kick=control.disconnect)
        except AlreadyLive as exc:
            raise PublishRefused(BAD_CONNECTION, "the channel is already live") from exc
        except StagecastError as exc:
            raise PublishRefused(BAD_CONNECTION, "service unavailable, try again") from exc
        log.info("publisher %s live on %s (session %s)", control.peer, match.slug, session.id)
        feed = FlvFeed(
            session,
            ffmpeg=self._ffmpeg,
            segment_seconds=self._segment_seconds,
            on_fatal=control.disconnect,
        )
        return RtmpPublisher(feed, self._manager, session)

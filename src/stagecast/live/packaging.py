"""Feed one publisher's FLV audio/video into packager runs, restarting ffmpeg when it fails.

A packager run starts at a video keyframe with the decoder configuration replayed, so a
restart (after an ffmpeg crash or stall) continues the same session in a new epoch: the
playlist gets a discontinuity and nothing already archived is touched.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from stagecast.live import flv, ladder
from stagecast.live.fmp4 import MediaError
from stagecast.live.hooks import MediaEvent
from stagecast.live.packager import Packager, PackagerExit, PackagerGone
from stagecast.live.session import LiveSession

log = logging.getLogger(__name__)

_RESTARTS_ALLOWED = 3
_RESTART_WINDOW = 60.0

Fatal = Callable[[str], Awaitable[None]]


class FlvFeed:
    """Turn RTMP media callbacks into packager input for ``session``."""

    def __init__(
        self,
        session: LiveSession,
        *,
        ffmpeg: str,
        segment_seconds: float,
        on_fatal: Fatal,
    ) -> None:
        self.session = session
        self._ffmpeg = ffmpeg
        self._segment_seconds = segment_seconds
        self._on_fatal = on_fatal
        self._metadata: dict[str, object] = {}
        self._video_config: tuple[int, bytes] | None = None
        self._audio_config: tuple[int, bytes] | None = None
        self._packager: Packager | None = None
        self._restarts: deque[float] = deque()
        self._closing = False
        self._first_run = True

    async def metadata(self, metadata: dict[str, object]) -> None:
        """Remember onMetaData (size, codecs) for the next packager run."""
        self._metadata = dict(metadata)

    def _observe(self, kind: str, timestamp_ms: int, payload: bytes, keyframe: bool) -> None:
        observers = self.session.deps.hooks.on_media
        if not observers:
            return
        event = MediaEvent(
            self.session.id, self.session.channel_id, kind, timestamp_ms, len(payload), keyframe
        )
        for observer in observers:
            try:
                observer(event)
            except Exception:  # an observer must never break ingest
                log.exception("media observer failed")

    async def audio(self, timestamp_ms: int, payload: bytes) -> None:
        """Take one audio message."""
        self._observe("audio", timestamp_ms, payload, False)
        if flv.is_audio_config(payload):
            self._audio_config = (timestamp_ms, payload)
        await self._write(flv.AUDIO, timestamp_ms, payload)

    async def video(self, timestamp_ms: int, payload: bytes) -> None:
        """Take one video message; a packager starts at the first keyframe."""
        keyframe = flv.is_keyframe(payload) and not flv.is_video_config(payload)
        self._observe("video", timestamp_ms, payload, keyframe)
        if flv.is_video_config(payload):
            self._video_config = (timestamp_ms, payload)
        if self._packager is None and not self._closing:
            if not flv.is_keyframe(payload) or self._video_config is None:
                return
            await self._start(timestamp_ms)
        await self._write(flv.VIDEO, timestamp_ms, payload)

    async def _write(self, kind: int, timestamp_ms: int, payload: bytes) -> None:
        packager = self._packager
        if packager is None:
            return
        try:
            await packager.write(flv.tag(kind, timestamp_ms, payload))
        except PackagerGone:
            # on_exit decides between a restart and giving up; media until then is dropped.
            self._packager = None

    def _has_audio(self) -> bool:
        return self._audio_config is not None or "audiocodecid" in self._metadata

    async def _start(self, timestamp_ms: int) -> None:
        if not self._first_run:
            self.session.next_epoch()
        self._first_run = False
        height = self._metadata.get("height")
        source_height = int(height) if isinstance(height, int | float) and height > 0 else None
        if self.session.profile == "abr":
            command, names = ladder.abr(
                self._ffmpeg, source_height=source_height, has_audio=self._has_audio()
            )
        else:
            command, names = ladder.passthrough(self._ffmpeg)
        packager = Packager(
            command,
            names,
            on_init=self._init,
            on_fragment=self.session.add_fragment,
            on_end=self.session.end_fragments,
            on_exit=self._exited,
            stall_after=max(20.0, 5 * self._segment_seconds),
        )
        await packager.start()
        self._packager = packager
        head = flv.header(has_audio=self._has_audio(), has_video=True)
        await packager.write(head)
        for config, kind in ((self._video_config, flv.VIDEO), (self._audio_config, flv.AUDIO)):
            if config is not None:
                await packager.write(flv.tag(kind, timestamp_ms, config[1]))

    async def _init(self, name: str, data: bytes) -> None:
        try:
            await self.session.add_init(name, data)
        except MediaError as exc:
            log.warning("session %s: bad init segment from the packager: %s", self.session.id, exc)

    async def _exited(self, exit: PackagerExit) -> None:
        if self._packager is not None and self._packager.exited.is_set():
            self._packager = None
        if self._closing or exit.reason == "finished":
            return
        now = time.monotonic()
        while self._restarts and now - self._restarts[0] > _RESTART_WINDOW:
            self._restarts.popleft()
        if len(self._restarts) >= _RESTARTS_ALLOWED:
            await self._on_fatal(f"packager failed {len(self._restarts) + 1} times")
            return
        self._restarts.append(now)
        log.info("session %s: restarting the packager after it %s", self.session.id, exit.reason)
        self._packager = None  # the next keyframe starts a new run in a new epoch

    async def close(self) -> None:
        """Let the current run write its last segment and stop (bounded)."""
        self._closing = True
        packager, self._packager = self._packager, None
        if packager is not None:
            await packager.finish()

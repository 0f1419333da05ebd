"""A publish handler for tests: accepts or refuses keys and records everything it receives."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from stagecast.ingest.rtmp import PublisherControl, PublishRefused, amf0
from stagecast.live import flv
from stagecast.live.flv import AUDIO as TAG_AUDIO
from stagecast.live.flv import VIDEO as TAG_VIDEO


def metadata_tag(metadata: dict[str, object]) -> bytes:
    """Return the FLV ``onMetaData`` script tag carrying ``metadata`` as an ECMA array."""
    return flv.tag(flv.SCRIPT, 0, amf0.encode("onMetaData") + amf0.encode_ecma_array(metadata))


@dataclass
class Recording:
    """What one publish delivered, in order."""

    app: str
    key: str
    control: PublisherControl
    metadata: list[dict[str, object]] = field(default_factory=list)
    media: list[tuple[int, int, bytes]] = field(default_factory=list)  # (tag type, ms, body)
    closes: list[str] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    video_count: int = 0
    _video_waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)

    def flv(self) -> bytes:
        """Return the stream as an FLV file: header, onMetaData, then every tag."""
        parts = [flv.header(has_audio=True, has_video=True)]
        parts += [metadata_tag(m) for m in self.metadata[:1]]
        parts += [flv.tag(kind, stamp, body) for kind, stamp, body in self.media]
        return b"".join(parts)

    async def wait_for_video(self, count: int, timeout: float) -> None:
        """Wait until ``count`` video messages have arrived (TimeoutError after ``timeout``)."""
        if self.video_count >= count:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._video_waiters.append((count, waiter))
        async with asyncio.timeout(timeout):
            await waiter

    def _video_arrived(self) -> None:
        self.video_count += 1
        for count, waiter in self._video_waiters:
            if self.video_count >= count and not waiter.done():
                waiter.set_result(None)


class RecordingPublisher:
    """Appends every callback to its ``Recording``; video waits for ``gate`` when given."""

    def __init__(self, recording: Recording, gate: asyncio.Event | None = None) -> None:
        self.recording = recording
        self.gate = gate

    async def on_metadata(self, metadata: dict[str, object]) -> None:
        """Record the metadata."""
        self.recording.metadata.append(metadata)

    async def on_audio(self, timestamp_ms: int, payload: bytes) -> None:
        """Record an audio message."""
        self.recording.media.append((TAG_AUDIO, timestamp_ms, payload))

    async def on_video(self, timestamp_ms: int, payload: bytes) -> None:
        """Record a video message (once the gate, if any, is open)."""
        if self.gate is not None:
            await self.gate.wait()
        self.recording.media.append((TAG_VIDEO, timestamp_ms, payload))
        self.recording._video_arrived()

    async def on_close(self, reason: str) -> None:
        """Record the close."""
        self.recording.closes.append(reason)
        self.recording.closed.set()


class RecordingHandler:
    """Accept any key not in ``refuse`` (key → (code, description)); record each publish."""

    def __init__(self, refuse: dict[str, tuple[str, str]] | None = None) -> None:
        self.refuse = refuse or {}
        self.gate: asyncio.Event | None = None  # when set, on_video waits for it: a slow consumer
        self.recordings: list[Recording] = []
        self.attempts: list[tuple[str, str]] = []
        self._opened = asyncio.Condition()

    async def open_publish(
        self, app: str, stream_key: str, control: PublisherControl
    ) -> RecordingPublisher:
        """Refuse the configured keys; record everything else."""
        self.attempts.append((app, stream_key))
        if stream_key in self.refuse:
            raise PublishRefused(*self.refuse[stream_key])
        recording = Recording(app, stream_key, control)
        self.recordings.append(recording)
        async with self._opened:
            self._opened.notify_all()
        return RecordingPublisher(recording, self.gate)

    async def recording(self, key: str, timeout: float) -> Recording:
        """Return the recording of ``key``, waiting up to ``timeout`` seconds for its publish."""
        async with asyncio.timeout(timeout), self._opened:
            await self._opened.wait_for(lambda: any(r.key == key for r in self.recordings))
        return next(r for r in self.recordings if r.key == key)

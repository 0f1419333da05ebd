"""The contract between the RTMP server and whoever takes the media (the live session).

The server calls ``PublishHandler.open_publish`` when a client publishes; the handler checks
the stream key and returns a ``Publisher`` that receives the stream, or raises
``PublishRefused``. The ``PublisherControl`` it is given lets it drop the publisher later.
"""

from __future__ import annotations

from typing import Final, Protocol

BAD_NAME: Final = "NetStream.Publish.BadName"
"""Status code for an unknown or revoked stream key."""
BAD_CONNECTION: Final = "NetStream.Publish.BadConnection"
"""Status code for a channel that already has a live publisher."""


class PublishRefused(Exception):
    """Refuse a publish; the client receives an error ``onStatus`` and is disconnected.

    ``code`` is the RTMP status code the client sees (``BAD_NAME``, ``BAD_CONNECTION``) and
    ``description`` its human-readable text (OBS and ffmpeg show it to the user).
    """

    def __init__(self, code: str, description: str) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description


class PublisherControl(Protocol):
    """The session's handle on one publishing connection."""

    async def disconnect(self, reason: str) -> None:
        """Close the connection; ``on_close(reason)`` follows from the connection's own task.

        Returns at once (it may be called from inside a ``Publisher`` callback); no media is
        delivered after it returns.
        """

    @property
    def peer(self) -> str:
        """Return the client's address as ``host:port``."""


class Publisher(Protocol):
    """Receives one publisher's stream, in order; the server awaits each call.

    While a call is pending the server stops reading that socket, so a slow consumer slows
    the encoder through TCP rather than growing a buffer.
    """

    async def on_metadata(self, metadata: dict[str, object]) -> None:
        """Take the stream's ``onMetaData`` (sent with ``@setDataFrame``)."""

    async def on_audio(self, timestamp_ms: int, payload: bytes) -> None:
        """Take one audio message body (an FLV AudioTagData) at ``timestamp_ms``.

        Timestamps are absolute 64-bit milliseconds that never wrap.
        """

    async def on_video(self, timestamp_ms: int, payload: bytes) -> None:
        """Take one video message body (an FLV VideoTagData, enhanced or not)."""

    async def on_close(self, reason: str) -> None:
        """Learn that the publisher is gone (unpublished, disconnected, kicked, error).

        Called exactly once, after the last media call.
        """


class PublishHandler(Protocol):
    """Decides who may publish and where the media goes."""

    async def open_publish(self, app: str, stream_key: str, control: PublisherControl) -> Publisher:
        """Return the publisher for ``stream_key`` on ``app``; raise ``PublishRefused`` to refuse.

        ``app`` is the application from ``connect`` without slashes ("live" for
        ``rtmp://host/live``); ``stream_key`` is the publish name without any ``?query``.
        """

"""Chat failures a client can see. Each maps to HTTP through the error tree and to a
WebSocket close code through ``ws_close_code`` (4000 + status unless stated)."""

from __future__ import annotations

from stagecast.errors import (
    BadRequest,
    Forbidden,
    PayloadTooLarge,
    StagecastError,
    TooManyRequests,
    Unprocessable,
)


class Banned(Forbidden):
    """The caller is banned from this channel's chat (close code 4403)."""

    code = "banned"


class TimedOut(Forbidden):
    """The caller is timed out; ``retry_after`` says for how many more seconds."""

    code = "timed_out"


class SlowMode(TooManyRequests):
    """Slow mode: the caller posted less than ``slow_mode_seconds`` ago."""

    code = "slow_mode"


class Blocked(Unprocessable):
    """A word filter of the channel refused the message."""

    code = "blocked"


class BadOrigin(Forbidden):
    """A cookie-authenticated socket came from another site (cross-site WebSocket hijacking)."""

    code = "bad_origin"


class InvalidFrame(BadRequest):
    """A socket frame was not a JSON object of a known type with valid fields."""

    code = "invalid_frame"


class FrameTooLarge(PayloadTooLarge):
    """A socket frame exceeded ``chat_max_frame_bytes``."""

    code = "frame_too_large"


class SlowConsumer(StagecastError):
    """The client did not read fast enough; its send queue overflowed (close code 4408).

    The client should reconnect with ``last_id`` to receive what it missed.
    """

    status = 408
    code = "slow_consumer"


class ServerRestarting(StagecastError):
    """The server is shutting down; reconnect (close code 1012, "service restart")."""

    status = 503
    code = "server_restarting"

    @property
    def ws_close_code(self) -> int:
        """Return 1012, which tells clients to reconnect."""
        return 1012


class InvalidJson(InvalidFrame):
    """A socket frame was not valid JSON."""

    code = "invalid_json"


class UnknownType(InvalidFrame):
    """A socket frame's ``type`` is not one the server knows."""

    code = "unknown_type"

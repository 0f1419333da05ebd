"""The error tree: every failure a client can see, with its HTTP status and a stable code.

Domain modules subclass these. One handler (``stagecast.web.errors``) renders them as
``{"error": {"code": ..., "message": ...}}`` with ``Retry-After`` where it applies, and the
WebSocket endpoints map the same classes to close codes (``ws_close_code``).
"""

from __future__ import annotations


class StagecastError(Exception):
    """Base of every error that is meant to reach a client."""

    status: int = 500
    code: str = "internal"
    retry_after: float | None = None

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        if retry_after is not None:
            self.retry_after = retry_after

    @property
    def ws_close_code(self) -> int:
        """Return the WebSocket close code for this error (4000 + HTTP status; 1013 for 503)."""
        if self.status == 503:
            return 1013
        return 4000 + self.status


class BadRequest(StagecastError):
    """The request is malformed (bad cursor, bad value)."""

    status = 400
    code = "bad_request"


class Unauthorized(StagecastError):
    """No valid credentials were presented."""

    status = 401
    code = "unauthorized"


class Forbidden(StagecastError):
    """The caller is known but may not do this (only where existence is not secret)."""

    status = 403
    code = "forbidden"


class NotFound(StagecastError):
    """The thing does not exist, or the caller may not know that it does."""

    status = 404
    code = "not_found"


class Conflict(StagecastError):
    """The request conflicts with the current state (a taken name, a finished session)."""

    status = 409
    code = "conflict"


class PayloadTooLarge(StagecastError):
    """The request body exceeds its limit."""

    status = 413
    code = "payload_too_large"


class UnsupportedMedia(StagecastError):
    """The body is not the kind of data this endpoint takes."""

    status = 415
    code = "unsupported_media"


class Unprocessable(StagecastError):
    """The request is well-formed but a field is invalid."""

    status = 422
    code = "invalid"


class TooManyRequests(StagecastError):
    """A rate or connection limit was hit; ``retry_after`` says when to try again."""

    status = 429
    code = "rate_limited"


class ServiceUnavailable(StagecastError):
    """A dependency is unavailable; safe to retry after ``retry_after`` seconds."""

    status = 503
    code = "unavailable"
    retry_after: float | None = 1.0


class GatewayTimeout(StagecastError):
    """A dependency did not answer in time."""

    status = 504
    code = "timeout"

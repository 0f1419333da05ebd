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


# -- what the OpenAPI document says of errors --------------------------------------------------

ERROR_SCHEMA: dict[str, object] = {
    "title": "Error",
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}
ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Malformed request: a bad or tampered cursor or token, a body not sent in time",
    401: "No valid credentials (a bad bearer token, not signed in)",
    403: "Not allowed: CSRF check failed, a role or ban forbids it, or a limit of the account",
    404: "Not found, or not visible to the caller",
    405: "Method not allowed (Allow lists the methods the path has)",
    409: "Conflicts with the current state (a name taken, already live)",
    413: "Body too large",
    415: "Unsupported media",
    422: "Invalid input",
    429: "Rate or connection limit reached (Retry-After says when to try again)",
    503: "A dependency is unavailable (database, Redis); retry after Retry-After",
    504: "The database did not answer within the deadline",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, object]]:
    """Return FastAPI ``responses=`` entries for the error ``statuses`` a route can give.

    Every entry refers to the one error body (``{"error": {"code", "message"}}``) and the one
    description of its status here; ``stagecast.web.openapi`` adds the errors every route of a
    kind gives (authentication, CSRF, unknown path ids, database), so routes name only their own.
    """
    return {
        status: {
            "description": ERROR_DESCRIPTIONS[status],
            "content": {"application/json": {"schema": ERROR_SCHEMA}},
        }
        for status in statuses
    }

"""Database failures as clients see them. The retry layer raises these and nothing else."""

from __future__ import annotations

from stagecast.errors import GatewayTimeout, ServiceUnavailable


class DatabaseUnavailable(ServiceUnavailable):
    """Transient errors persisted through every retry; the operation did not happen."""

    code = "db_unavailable"


class OutcomeUnknown(ServiceUnavailable):
    """A write was sent but its result never came back; it may or may not have been applied.

    Not retried automatically: the client should check before trying again.
    """

    code = "db_outcome_unknown"
    retry_after = None


class DatabaseTimeout(GatewayTimeout):
    """One attempt exceeded its timeout and nothing more may be tried."""

    code = "db_timeout"


class DeadlineExceeded(GatewayTimeout):
    """The operation's total deadline ran out before it could succeed."""

    code = "db_deadline"

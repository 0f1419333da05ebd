"""Which database errors are transient, and how long to wait before trying again.

Errors are classified by SQLSTATE (PostgreSQL), by SQLite's result code and by driver
exception class, never by message text. The backoff is the one rule of ``stagecast.backoff``:
capped exponential with full jitter.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum, StrEnum

import asyncpg
from sqlalchemy.exc import DBAPIError

from stagecast import backoff


class Kind(StrEnum):
    """What an operation does, which decides what may be retried."""

    READ = "read"
    IDEMPOTENT_WRITE = "idempotent_write"
    WRITE = "write"


class Failure(Enum):
    """The class of a database error, as far as retrying is concerned."""

    TRANSIENT = "transient"  # rolled back for sure: safe to retry any kind
    CONNECTION_LOST = "connection_lost"  # the connection died; the outcome of a write is unknown
    TIMEOUT = "timeout"  # the server cancelled the statement (or SQLite was interrupted)
    PERMANENT = "permanent"  # a bug or a constraint: retrying will not help


# Rolled back, nothing applied, worth another try.
_TRANSIENT_SQLSTATES = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "55P03",  # lock_not_available (lock_timeout)
        "53300",  # too_many_connections
        "57P03",  # cannot_connect_now (server starting up)
        "53400",  # configuration_limit_exceeded
    }
)
# The server ended the session: what was in flight is lost.
_LOST_SQLSTATES = frozenset({"57P01", "57P02", "08000", "08003", "08006", "08001", "08004"})
_TIMEOUT_SQLSTATES = frozenset({"57014"})  # query_canceled (statement_timeout)

_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_INTERRUPT = 5, 6, 9

_LOST_EXCEPTIONS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.ConnectionFailureError,
    # The client's protocol state is broken (seen on a connection the server had just ended).
    asyncpg.exceptions.InternalClientError,
    ConnectionError,
    OSError,
    EOFError,
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """Yield ``exc``, the driver error SQLAlchemy wrapped, and their causes."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop(0)
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        todo.extend([getattr(item, "orig", None), item.__cause__, item.__context__])


def sqlstate_class(exc: BaseException) -> str | None:
    """Return the two-character SQLSTATE class of a PostgreSQL error (e.g. "22"), if any."""
    for item in _chain(exc):
        sqlstate = getattr(item, "sqlstate", None)
        if isinstance(sqlstate, str) and len(sqlstate) == 5:
            return sqlstate[:2]
    return None


def classify(exc: BaseException) -> Failure:
    """Return the retry class of ``exc`` from its SQLSTATE, SQLite code or exception class."""
    for item in _chain(exc):
        sqlstate = getattr(item, "sqlstate", None)
        if isinstance(sqlstate, str):
            if sqlstate in _TRANSIENT_SQLSTATES:
                return Failure.TRANSIENT
            if sqlstate in _TIMEOUT_SQLSTATES:
                return Failure.TIMEOUT
            if sqlstate in _LOST_SQLSTATES or sqlstate.startswith("08"):
                return Failure.CONNECTION_LOST
        if isinstance(item, sqlite3.Error):
            code = (getattr(item, "sqlite_errorcode", 0) or 0) & 0xFF
            if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
                return Failure.TRANSIENT
            if code == _SQLITE_INTERRUPT:
                return Failure.TIMEOUT
    for item in _chain(exc):
        if isinstance(item, _LOST_EXCEPTIONS):
            return Failure.CONNECTION_LOST
        # SQLAlchemy invalidates the connection when the driver reports it closed, whatever
        # the error class (asyncpg raises a plain InterfaceError on a closed connection).
        if isinstance(item, DBAPIError) and item.connection_invalidated:
            return Failure.CONNECTION_LOST
    return Failure.PERMANENT


@dataclass(frozen=True)
class Backoff:
    """The database layer's backoff bounds (seconds): ``base`` is the first ceiling.

    Shared by concurrent calls, so it holds no state: ``Database.run`` counts the attempts.
    """

    base: float = 0.05
    cap: float = 1.0

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """Return the sleep before retry number ``retry`` (1 for the first retry)."""
        return backoff.delay(retry, self.base, self.cap, rng)

"""Classification of database errors and the backoff schedule (pure logic)."""

from __future__ import annotations

import random
import sqlite3

import asyncpg
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.exc import DBAPIError

from stagecast.db.retry import Backoff, Failure, classify


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__("message text that must not matter")
        self.sqlstate = sqlstate


def _sqlite_error(code: int) -> sqlite3.OperationalError:
    error = sqlite3.OperationalError("database is locked")
    error.sqlite_errorcode = code  # type: ignore[attr-defined]
    return error


def test_sqlstates_classify_by_code_not_text() -> None:
    """Serialization, deadlock, lock timeout and connection limits are transient."""
    for code in ("40001", "40P01", "55P03", "53300", "57P03"):
        assert classify(_PgError(code)) is Failure.TRANSIENT, code
    assert classify(_PgError("57014")) is Failure.TIMEOUT
    for code in ("57P01", "08006", "08003", "08000"):
        assert classify(_PgError(code)) is Failure.CONNECTION_LOST, code
    assert classify(_PgError("23505")) is Failure.PERMANENT


def test_wrapped_driver_errors_are_found_through_the_chain() -> None:
    """An error wrapped by SQLAlchemy (``orig``) or chained (``__cause__``) is classified."""

    class Wrapper(Exception):
        orig: BaseException

    wrapper = Wrapper("wrapped")
    wrapper.orig = _PgError("40P01")
    assert classify(wrapper) is Failure.TRANSIENT
    try:
        raise RuntimeError("outer") from asyncpg.exceptions.ConnectionDoesNotExistError("gone")
    except RuntimeError as exc:
        assert classify(exc) is Failure.CONNECTION_LOST


def test_sqlite_result_codes() -> None:
    """SQLITE_BUSY and SQLITE_LOCKED (and extended codes) retry; SQLITE_INTERRUPT is a timeout."""
    assert classify(_sqlite_error(5)) is Failure.TRANSIENT
    assert classify(_sqlite_error(6)) is Failure.TRANSIENT
    assert classify(_sqlite_error(5 | (2 << 8))) is Failure.TRANSIENT  # SQLITE_BUSY_SNAPSHOT
    assert classify(_sqlite_error(9)) is Failure.TIMEOUT
    assert classify(_sqlite_error(19)) is Failure.PERMANENT  # constraint


def test_errors_on_a_closed_or_broken_connection_are_lost_connections() -> None:
    """SQLAlchemy's invalidation and asyncpg's client-state errors mean the connection is gone."""
    closed = asyncpg.exceptions.InterfaceError("connection is closed")
    assert classify(DBAPIError("SELECT 1", None, closed)) is Failure.PERMANENT
    invalidated = DBAPIError("SELECT 1", None, closed, connection_invalidated=True)
    assert classify(invalidated) is Failure.CONNECTION_LOST
    broken = asyncpg.exceptions.InternalClientError("cannot switch to state 15")
    assert classify(DBAPIError("SELECT 1", None, broken)) is Failure.CONNECTION_LOST


def test_connection_errors_are_lost_connections() -> None:
    """A reset socket is a lost connection, whatever its message says."""
    assert classify(ConnectionResetError("whatever")) is Failure.CONNECTION_LOST
    assert classify(ValueError("connection lost")) is Failure.PERMANENT


@given(
    retry=st.integers(min_value=1, max_value=60),
    base=st.floats(min_value=0.001, max_value=1.0),
    cap=st.floats(min_value=0.001, max_value=10.0),
    seed=st.integers(),
)
def test_backoff_is_full_jitter_under_the_cap(
    retry: int, base: float, cap: float, seed: int
) -> None:
    """Each delay lies in [0, min(cap, base * 2^(retry-1))]."""
    delay = Backoff(base, cap).delay(retry, random.Random(seed))
    assert 0.0 <= delay <= min(cap, base * 2 ** (retry - 1)) + 1e-12

"""The one entry point for every database call: ``Database.run(unit, kind=...)``.

A *unit* is an async function of one ``AsyncConnection`` that runs inside one transaction.
``run`` executes it with a per-attempt timeout that the server enforces too
(``statement_timeout``/``lock_timeout`` on PostgreSQL, an interrupt on SQLite), retries
transient failures with backoff inside a total deadline, and never retries a ``write`` whose
outcome is unknown. Failures leave as the errors of ``stagecast.db.errors``.

On PostgreSQL every pooled session starts with the default attempt's ``statement_timeout`` and
``lock_timeout``, so the common attempt sends no SET: a read with the default timeout runs its
statements in autocommit (READ COMMITTED takes a snapshot per statement either way), one round
trip each; an idempotent write costs BEGIN, its statements and COMMIT. Units therefore change
settings only for their transaction (``SET LOCAL`` or ``set_config(..., true)``), never for the
session, and a READ unit never locks rows (``FOR UPDATE`` belongs in a write).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import event, text
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from stagecast.config import Settings
from stagecast.db.errors import (
    DatabaseTimeout,
    DatabaseUnavailable,
    DeadlineExceeded,
    OutcomeUnknown,
)
from stagecast.db.retry import Backoff, Failure, Kind, classify
from stagecast.db.stats import DbStats

log = logging.getLogger(__name__)

T = TypeVar("T")
Unit = Callable[[AsyncConnection], Awaitable[T]]

# The client-side backstop fires this long after the server-side timeout should have.
_CLIENT_MARGIN = 0.5
# An attempt with less time than this left is not started.
_MIN_ATTEMPT = 0.02
# Pool-entry key of the (statement, lock) timeouts in ms a PostgreSQL session was opened with.
_SESSION_TIMEOUTS = "stagecast.session_timeouts"
# Transaction-local (the third argument): they end with the attempt's transaction.
_SET_TIMEOUTS = text(
    "SELECT set_config('statement_timeout', :st, true), set_config('lock_timeout', :lt, true)"
)


def _timeouts_ms(timeout: float, lock_timeout: float) -> tuple[int, int]:
    """Return the server-side statement and lock timeouts (ms) of an attempt of ``timeout``."""
    return max(int(timeout * 1000), 1), max(int(min(lock_timeout, timeout) * 1000), 1)


@dataclass(frozen=True)
class Limits:
    """Timing policy of the database layer (seconds)."""

    attempt_timeout: float = 2.0
    lock_timeout: float = 1.0
    deadline: float = 5.0
    max_attempts: int = 4
    backoff: Backoff = field(default_factory=Backoff)
    slow_query: float = 0.5

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """Build the policy from the ``STAGECAST_DB_*`` settings."""
        return cls(
            attempt_timeout=settings.db_attempt_timeout,
            lock_timeout=settings.db_lock_timeout,
            deadline=settings.db_deadline,
            max_attempts=settings.db_max_attempts,
            backoff=Backoff(settings.db_backoff_base, settings.db_backoff_cap),
            slow_query=settings.db_slow_query,
        )


class Database:
    """An engine plus the retry policy; the only way code reaches the database."""

    def __init__(self, engine: AsyncEngine, limits: Limits, *, rng: random.Random | None = None):
        self.engine = engine
        self.limits = limits
        self.stats = DbStats()
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._rng = rng or random.Random()
        # SQLite takes one writer at a time. Queueing this process's writers here (fairly,
        # within the attempt timeout) beats SQLite's busy handler, which sleeps up to 100 ms
        # between tries; other processes are still held off by busy_timeout and retries.
        self._sqlite_writer = asyncio.Lock()

    async def run(
        self,
        unit: Unit[T],
        *,
        kind: Kind,
        name: str = "",
        deadline: float | None = None,
        attempt_timeout: float | None = None,
    ) -> T:
        """Run ``unit`` in a transaction; retry it whole where ``kind`` allows.

        Raises ``DatabaseUnavailable`` (retries exhausted), ``DatabaseTimeout`` (an attempt
        timed out and may not be retried), ``DeadlineExceeded`` (no time left for another
        attempt) or ``OutcomeUnknown`` (a ``write`` lost its connection or its answer).
        Permanent errors (constraint violations, bugs) propagate unchanged on the first try.
        """
        op = name or getattr(unit, "__qualname__", "unit")
        loop = asyncio.get_running_loop()
        stop_at = loop.time() + (deadline if deadline is not None else self.limits.deadline)
        per_attempt = (
            attempt_timeout if attempt_timeout is not None else self.limits.attempt_timeout
        )
        attempt = 0
        while True:
            attempt += 1
            remaining = stop_at - loop.time()
            if remaining < _MIN_ATTEMPT:
                self.stats.deadline_stops[kind] += 1
                raise DeadlineExceeded(
                    f"database deadline exceeded in {op} after {attempt - 1} attempts"
                )
            if attempt > 1:
                self.stats.retries[kind] += 1
            self.stats.attempts[kind] += 1
            try:
                return await self._attempt(unit, kind, op, min(per_attempt, remaining))
            except Exception as exc:
                failure, sent = self._failure_of(exc)
                self._raise_if_final(exc, failure, sent, kind, op, attempt)
                delay = self.limits.backoff.delay(attempt, self._rng)
                if loop.time() + delay + _MIN_ATTEMPT > stop_at:
                    self.stats.deadline_stops[kind] += 1
                    raise DeadlineExceeded(
                        f"database deadline exceeded in {op} after {attempt} attempts"
                    ) from exc
                log.info(
                    "db retry op=%s kind=%s attempt=%d failure=%s", op, kind, attempt, failure.value
                )
                await asyncio.sleep(delay)

    @staticmethod
    def _failure_of(exc: Exception) -> tuple[Failure, bool]:
        if isinstance(exc, _AttemptError):
            return exc.failure, exc.sent
        return classify(exc), True

    def _raise_if_final(
        self, exc: Exception, failure: Failure, sent: bool, kind: Kind, op: str, attempt: int
    ) -> None:
        cause = exc.__cause__ if isinstance(exc, _AttemptError) else exc
        if failure is Failure.PERMANENT:
            self.stats.failures[kind] += 1
            raise cause if cause is not None else exc
        if failure is Failure.TIMEOUT:
            self.stats.timeouts[kind] += 1
        if kind is Kind.WRITE and sent and failure is not Failure.TRANSIENT:
            self.stats.failures[kind] += 1
            if failure is Failure.TIMEOUT and not _is_client_timeout(exc):
                raise DatabaseTimeout(f"{op} timed out; it was not applied") from cause
            self.stats.outcome_unknown[kind] += 1
            raise OutcomeUnknown(
                f"{op} lost its answer; it may or may not have been applied"
            ) from cause
        if attempt >= self.limits.max_attempts:
            self.stats.failures[kind] += 1
            if failure is Failure.TIMEOUT:
                raise DatabaseTimeout(f"{op} timed out {attempt} times") from cause
            raise DatabaseUnavailable(
                f"database unavailable: {op} failed {attempt} times"
            ) from cause

    async def _attempt(self, unit: Unit[T], kind: Kind, op: str, timeout: float) -> T:
        started = time.perf_counter()
        sent = False
        try:
            async with (
                asyncio.timeout(timeout + _CLIENT_MARGIN),
                self._writer(kind),
                self.engine.connect() as conn,
            ):
                watchdog = await self._arm(conn, timeout)
                try:
                    await self._open_transaction(conn, kind, timeout)
                    sent = True
                    result = await unit(conn)
                    await conn.commit()
                    return result
                except (DBAPIError, OSError) as exc:
                    if classify(exc) is Failure.CONNECTION_LOST and not conn.invalidated:
                        # A connection in an unknown state must not go back to the pool.
                        with contextlib.suppress(Exception):
                            await conn.invalidate()
                    raise
                finally:
                    if watchdog is not None:
                        watchdog.cancel()
        except TimeoutError as exc:
            raise _AttemptError(Failure.TIMEOUT, sent, client=True) from exc
        except (DBAPIError, PoolTimeout, OSError) as exc:
            failure = classify(exc) if not isinstance(exc, PoolTimeout) else Failure.TRANSIENT
            if failure is Failure.PERMANENT:
                raise
            raise _AttemptError(failure, sent) from exc
        finally:
            elapsed = time.perf_counter() - started
            if elapsed > self.limits.slow_query:
                self.stats.slow[kind] += 1
                log.warning("db slow op=%s kind=%s seconds=%.3f", op, kind, elapsed)

    def _writer(self, kind: Kind) -> contextlib.AbstractAsyncContextManager[object]:
        if self.is_sqlite and kind is not Kind.READ:
            return self._sqlite_writer
        return contextlib.nullcontext()

    async def _arm(self, conn: AsyncConnection, timeout: float) -> asyncio.TimerHandle | None:
        """On SQLite, schedule an interrupt of the running statement at the attempt timeout."""
        if not self.is_sqlite:
            return None
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        if driver is None:
            return None
        loop = asyncio.get_running_loop()
        # sqlite3's interrupt() is safe to call from another thread; aiosqlite runs it directly.
        return loop.call_later(timeout, driver._conn.interrupt)

    async def _open_transaction(self, conn: AsyncConnection, kind: Kind, timeout: float) -> None:
        """Begin and set the server-side timeouts; a failure here sent nothing of the unit.

        Whatever goes wrong at this point (typically a pooled connection the server dropped,
        for example across a restart) is retried on a fresh connection, for every kind: the
        connection is discarded so the pool does not hand it out again.
        """
        try:
            await self._begin(conn, kind, timeout)
        except (DBAPIError, OSError) as exc:
            if classify(exc) is Failure.TRANSIENT:  # e.g. SQLite busy: the connection is fine
                raise _AttemptError(Failure.TRANSIENT, False) from exc
            with contextlib.suppress(Exception):
                await conn.invalidate()
            raise _AttemptError(Failure.CONNECTION_LOST, False) from exc

    async def _begin(self, conn: AsyncConnection, kind: Kind, timeout: float) -> None:
        if self.is_sqlite:
            immediate = kind is not Kind.READ
            await conn.execution_options(stagecast_immediate=immediate)
            await conn.begin()
            return
        # No explicit begin(): SQLAlchemy begins on the first statement and ``run`` commits,
        # one transaction either way, for one step less through its greenlet bridge.
        timeouts = _timeouts_ms(timeout, self.limits.lock_timeout)
        if kind is Kind.READ and conn.info.get(_SESSION_TIMEOUTS) == timeouts:
            # A read at READ COMMITTED sees a fresh snapshot per statement inside a transaction
            # or out of one, and the session's timeouts hold for each statement: without
            # BEGIN and COMMIT a one-statement read is one round trip instead of three.
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            return
        if kind is not Kind.WRITE and conn.info.get(_SESSION_TIMEOUTS) == timeouts:
            # The session already runs with these timeouts: the server enforces them without a
            # SET, and BEGIN goes out with the unit's first statement (a dead pooled connection
            # then fails inside the unit, which is retried all the same for this kind). A WRITE
            # sends its SET first, so such a failure is known to have sent nothing of it.
            return
        statement_ms, lock_ms = timeouts
        await conn.execute(_SET_TIMEOUTS, {"st": f"{statement_ms}ms", "lt": f"{lock_ms}ms"})

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


class _AttemptError(Exception):
    """One failed attempt, already classified."""

    def __init__(self, failure: Failure, sent: bool, *, client: bool = False) -> None:
        super().__init__(failure.value)
        self.failure = failure
        self.sent = sent
        self.client = client


def _is_client_timeout(exc: Exception) -> bool:
    return isinstance(exc, _AttemptError) and exc.client


def create_engine(settings: Settings) -> AsyncEngine:
    """Create the async engine for ``settings`` (SQLite pragmas, PostgreSQL pool sizes)."""
    url = settings.resolved_database_url
    if url.startswith("sqlite"):
        return _sqlite_engine(url, settings)
    timeouts = _timeouts_ms(settings.db_attempt_timeout, settings.db_lock_timeout)
    engine = create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_timeout=settings.db_attempt_timeout,
        # No pre-ping round trip: a dead pooled connection fails the first statement of the
        # attempt, which the retry layer retries (a WRITE's first statement is its SET).
        pool_pre_ping=False,
        connect_args={
            "timeout": settings.db_attempt_timeout,
            # Every session starts with the default attempt's server-side timeouts, in its
            # startup packet: an attempt that needs exactly these sends no SET (one round
            # trip fewer per read). Others set their own for their transaction only.
            "server_settings": {
                "statement_timeout": f"{timeouts[0]}ms",
                "lock_timeout": f"{timeouts[1]}ms",
            },
        },
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: DBAPIConnection, record: ConnectionPoolEntry) -> None:
        record.info[_SESSION_TIMEOUTS] = timeouts

    return engine


def _sqlite_engine(url: str, settings: Settings) -> AsyncEngine:
    path = url.split(":///", 1)[-1]
    if path and path != ":memory:":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=0,
        pool_timeout=settings.db_attempt_timeout,
        connect_args={"timeout": settings.sqlite_busy_timeout},
    )
    busy_ms = int(settings.sqlite_busy_timeout * 1000)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: DBAPIConnection, record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN, so writers can take the lock up front.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("stagecast_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def open_database(settings: Settings) -> Database:
    """Create the engine and wrap it in the retry policy from ``settings``."""
    return Database(create_engine(settings), Limits.from_settings(settings))

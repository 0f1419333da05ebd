"""The load generators of the delivery table: wrk, and this bench's asyncio clients.

Fixed URLs (segments, parts, playlists) are loaded with ``wrk`` (one thread) when installed,
else with a small asyncio client; blocking reloads always with the asyncio client, since each
connection's next request depends on the answer to its last one (wrk's scripts cannot keep
state per connection): every connection asks ``_HLS_msn``/``_HLS_part`` for the part after the
newest it has seen, from a loopback address of its own (the server bounds held requests per
client address, as it would for viewers on the internet). The asyncio clients run in this
process, under uvloop; their CPU is this process's.
"""

from __future__ import annotations

import asyncio
import re
import resource
import subprocess
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from bench.delivery_client import Connection, HttpError, read_playlist, source_address, target_of
from bench.delivery_servers import Target, tool
from bench.ingest import _cpu_seconds, _percentile

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZES = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


@dataclass(frozen=True)
class Load:
    """What one generator run saw: req/s, bytes/s, p50 and p99 (s), failed requests, and for
    blocking reloads how long after the first answer for a part the others came (p50, p99)."""

    requests_per_s: float
    bytes_per_s: float
    p50: float
    p99: float
    errors: int
    spread: tuple[float, float] | None = None


@dataclass(frozen=True)
class Figures:
    """What one server did under one load: rates, latency (s), CPU (cores busy)."""

    requests_per_s: float
    mb_per_s: float
    p50: float
    p99: float
    errors: int
    server_cpu: float
    generator_cpu: float
    spread: tuple[float, float] | None = None


def _wrk_seconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)([a-z]+)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def wrk(url: str, connections: int, seconds: float) -> Load:
    """Run wrk (one thread) on ``url``."""
    program = tool("wrk")
    assert program is not None
    command = [program, "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s"]
    out = subprocess.run(
        [*command, "--latency", url], capture_output=True, text=True, check=True,
        timeout=seconds + 60,
    ).stdout  # fmt: skip
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+), ([\d.]+)(\w+) read", out)
    if total is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    elapsed = _wrk_seconds(total.group(2) + total.group(3))
    size = float(total.group(4)) * _SIZES[total.group(5)]
    percentile = dict(re.findall(r"^\s+(\d+)%\s+(\S+)\s*$", out, re.MULTILINE))
    errors = sum(int(n) for n in re.findall(r"(?:Non-2xx or 3xx responses|timeout) (\d+)", out))
    errors += sum(int(n) for n in re.findall(r"(?:connect|read|write) (\d+)", out))
    return Load(
        int(total.group(1)) / elapsed,
        size / elapsed,
        _wrk_seconds(percentile["50"]),
        _wrk_seconds(percentile["99"]),
        errors,
    )


@dataclass
class _Tally:
    """Every answer of one asyncio run: latencies (s), sizes (bytes), errors."""

    latencies: list[float]
    sizes: list[int]
    errors: int = 0


async def _fetch_loop(connection: Connection, target: str, until: float, tally: _Tally) -> None:
    """Fetch ``target`` over one keep-alive connection until ``until`` (monotonic seconds)."""
    while time.monotonic() < until:
        started, before = time.perf_counter(), connection.received
        status, _ = await connection.get(target, keep=False)
        if status != 200:
            raise HttpError(status, f"status {status}")
        tally.latencies.append(time.perf_counter() - started)
        tally.sizes.append(connection.received - before)


async def _blocking_loop(
    connection: Connection,
    playlist: str,
    until: float,
    tally: _Tally,
    answered: dict[tuple[int, int], list[float]],
) -> None:
    """Ask for the part after the newest seen, again and again, until ``until``.

    ``answered`` collects, per (msn, part) asked for, when each answer came (monotonic).
    """
    glue = "&" if "?" in playlist else "?"
    _, body = await connection.get(playlist, keep=True)  # where the edge is: not held
    newest = read_playlist(body.decode()).parts[-1]
    while time.monotonic() < until:
        assert newest.part is not None
        asked = (newest.msn, newest.part + 1)
        started, before = time.perf_counter(), connection.received
        status, body = await connection.get(
            f"{playlist}{glue}_HLS_msn={asked[0]}&_HLS_part={asked[1]}", keep=True
        )
        if status != 200:  # 503 past the hold limit, 429 past the bounds: ask again
            tally.errors += 1
            _, body = await connection.get(playlist, keep=True)
        else:
            tally.latencies.append(time.perf_counter() - started)
            tally.sizes.append(connection.received - before)
            answered.setdefault(asked, []).append(time.monotonic())
        newest = read_playlist(body.decode()).parts[-1]


def _spread(answered: dict[tuple[int, int], list[float]]) -> tuple[float, float]:
    """Return p50 and p99 of how long after the first answer for a part each other one came."""
    after = [t - min(times) for times in answered.values() if len(times) > 1 for t in times]
    return _percentile(after, 0.5), _percentile(after, 0.99)


def _run_loop(main: Coroutine[Any, Any, list[BaseException | None]]) -> list[Any]:
    try:
        import uvloop  # ships with uvicorn[standard]
    except ImportError:  # pragma: no cover
        return asyncio.run(main)
    return uvloop.run(main)


def asyncio_load(url: str, connections: int, seconds: float, *, blocking: bool = False) -> Load:
    """Run the asyncio client (``blocking``: the blocking reload client) in this process."""
    parts = urlsplit(url)
    host, port, target = parts.hostname or "127.0.0.1", parts.port or 80, target_of(url)
    tally = _Tally([], [])
    answered: dict[tuple[int, int], list[float]] = {}
    sockets: list[Connection] = []

    async def main() -> list[BaseException | None]:
        until = time.monotonic() + seconds
        jobs = []
        for index in range(connections):
            sockets.append(Connection(host, port, source_address(index)))
            if blocking:
                jobs.append(_blocking_loop(sockets[-1], target, until, tally, answered))
            else:
                jobs.append(_fetch_loop(sockets[-1], target, until, tally))
        try:
            return await asyncio.gather(*jobs, return_exceptions=True)
        finally:
            for connection in sockets:
                connection.close()

    started = time.monotonic()
    outcomes = _run_loop(main())
    elapsed = time.monotonic() - started
    return Load(
        len(tally.latencies) / elapsed,
        sum(tally.sizes) / elapsed,
        _percentile(tally.latencies, 0.5),
        _percentile(tally.latencies, 0.99),
        tally.errors + sum(1 for outcome in outcomes if outcome is not None),
        _spread(answered) if blocking else None,
    )


def _cpu_now(include_self: bool) -> float:
    """Return CPU seconds used so far by waited-for children (and this process if asked)."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = used.ru_utime + used.ru_stime
    if include_self:
        own = resource.getrusage(resource.RUSAGE_SELF)
        total += own.ru_utime + own.ru_stime
    return total


def measure(target: Target, kind: str, connections: int, seconds: float) -> Figures:
    """Load ``target`` with requests of ``kind`` and return the figures of that run."""
    generate: Callable[[str, int, float], Load]
    if kind == "blocking":
        generate = lambda url, n, s: asyncio_load(url, n, s, blocking=True)  # noqa: E731
    else:
        generate = wrk if tool("wrk") else asyncio_load
    # The asyncio clients run in this process: their cost is this process's CPU.
    own = generate is not wrk
    cpu_before, server_before = _cpu_now(own), _cpu_seconds(target.pids)
    wall_before = time.monotonic()
    load = generate(target.urls[kind](), connections, seconds)
    wall = time.monotonic() - wall_before
    return Figures(
        requests_per_s=load.requests_per_s,
        mb_per_s=load.bytes_per_s / 1e6,
        p50=load.p50,
        p99=load.p99,
        errors=load.errors,
        server_cpu=(_cpu_seconds(target.pids) - server_before) / wall,
        generator_cpu=(_cpu_now(own) - cpu_before) / wall,
        spread=load.spread,
    )

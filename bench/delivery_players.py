"""Viewers held: simulated players fetching like hls.js, at rising counts, in their own processes.

A player opens the channel's master playlist (getting its own ``vs``), reads its first variant
and the init segment, and then fetches as hls.js does:

- standard: reloads the media playlist every target duration and fetches each new segment
  (it starts two segments behind the edge, as the viewer page's hls.js does);
- low latency (LL-HLS): asks for the next part with a blocking reload (``_HLS_msn``/
  ``_HLS_part``, with ``_HLS_skip=YES`` as hls.js does) and fetches each new part as soon as
  the playlist lists it, on a second connection (it starts three parts behind the edge).

Its buffered media ends at the end of the newest media it has fetched, dated by
PROGRAM-DATE-TIME (the wall clock at ingest). Four times a second each process compares that
with the wall clock: a player "falls behind" when its buffer end trails by more than 3 target
durations (standard) or PART-HOLD-BACK + 1 s (low latency) for 2 s. A count is held when no
player fell behind and every one started. Every player connects from a loopback address of its
own (the server bounds held requests per client address, as for viewers on the internet).

The players run in child processes of at most ``PER_PROCESS`` each (``python -m
bench.delivery_players``), under uvloop; each reports its CPU and how late its sampler ran (a
late sampler means the generator, not the server, was the limit; the table says so).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import resource
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from bench.chat_servers import PYTHON, ROOT
from bench.delivery_client import (
    Connection,
    HttpError,
    Media,
    Playlist,
    read_playlist,
    source_address,
    target_of,
)
from bench.ingest import _cpu_seconds

# A process answers its players' held requests in a burst when a part appears: 250 keep that
# burst (and so the generator's own delay) short.
PER_PROCESS = 250
LATE = 0.25  # seconds: a sampler later than this (p99) means the generator was busy
SAMPLE_EVERY = 0.25  # seconds between lag samples
BEHIND_FOR = 2.0  # seconds past the limit that make a player fall behind
RETRY_AFTER = 0.5  # seconds a player waits after a failed request (hls.js retries too)
_FAILURES = (OSError, HttpError, ValueError, IndexError, UnicodeDecodeError)


class Player:
    """One simulated viewer of ``kind`` ("standard" or "low"); see the module."""

    def __init__(self, kind: str, host: str, port: int, source: str) -> None:
        self.kind = kind
        self.lists = Connection(host, port, source)
        self.media = Connection(host, port, source)
        self.end: float | None = None  # wall clock (Unix s) where the buffered media ends
        self.limit = math.inf  # seconds behind the wall clock allowed
        self.behind_since: float | None = None
        self.fell_at: float | None = None
        self.errors: Counter[str] = Counter()  # failed requests by what came back
        self.failure: str | None = None
        self._init: str | None = None

    def observe(self, now: float, wall: float, lags: Counter[int]) -> None:
        """Take one lag sample (``now`` monotonic, ``wall`` Unix s); 10 ms buckets in ``lags``."""
        if self.end is None:
            return
        lag = wall - self.end
        lags[max(0, int(lag * 100))] += 1
        if lag <= self.limit:
            self.behind_since = None
        elif self.behind_since is None:
            self.behind_since = now
        elif now - self.behind_since >= BEHIND_FOR and self.fell_at is None:
            self.fell_at = now

    async def run(self, master: str, delay: float, until: float) -> None:
        """Join after ``delay`` seconds and play until ``until`` (monotonic)."""
        await asyncio.sleep(delay)  # the ramp: players join one after the other
        try:
            status, body = await self.lists.get(master, keep=True)
            if status != 200:
                raise HttpError(status, f"master playlist: status {status}")
            variant = next(ln for ln in body.decode().splitlines() if ln and ln[0] != "#")
            playlist = urljoin(master, variant)
            if self.kind == "standard":
                await self._standard(playlist, until)
            else:
                await self._low(playlist, until)
        except _FAILURES as exc:
            self.failure = f"{type(exc).__name__}: {exc}"
        finally:
            self.lists.close()
            self.media.close()

    async def _fetch(self, playlist: str, item: Media | str) -> bool:
        """Fetch a segment, part or init (URI relative to ``playlist``); False if it failed."""
        uri = item if isinstance(item, str) else item.uri
        try:
            status, _ = await self.media.get(urljoin(playlist, uri), keep=False)
        except (OSError, HttpError) as exc:
            status, failed = 0, f"{type(exc).__name__}: {exc}"[:60]
        else:
            failed = f"media {status}"
        if status != 200:
            self.errors[failed] += 1
            return False
        if isinstance(item, Media):
            self.end = item.end if self.end is None else max(self.end, item.end)
        return True

    async def _read(self, target: str) -> Playlist | None:
        """Read a playlist; None (counted as an error) when the request failed."""
        try:
            status, body = await self.lists.get(target, keep=True)
        except (OSError, HttpError) as exc:
            status, failed = 0, f"{type(exc).__name__}: {exc}"[:60]
        else:
            failed = f"playlist {status}"
        if status != 200:
            self.errors[failed] += 1
            await asyncio.sleep(RETRY_AFTER)
            return None
        return read_playlist(body.decode())

    async def _start(self, playlist: str, listing: Playlist) -> None:
        if listing.map_uri and self._init is None:
            if not await self._fetch(playlist, listing.map_uri):
                raise HttpError(0, "the init segment did not load")
            self._init = listing.map_uri

    async def _standard(self, playlist: str, until: float) -> None:
        last = -1
        while (now := time.monotonic()) < until:
            listing = await self._read(playlist)
            if listing is None:
                continue
            self.limit = 3 * listing.target_duration
            await self._start(playlist, listing)
            fresh = [s for s in listing.segments if s.msn > last] if last >= 0 else None
            for segment in fresh if fresh is not None else listing.segments[-2:]:
                if await self._fetch(playlist, segment):
                    last = segment.msn
            # hls.js reloads a live playlist every target duration.
            wait = now + listing.target_duration - time.monotonic()
            await asyncio.sleep(max(0.0, min(wait, until - time.monotonic())))

    async def _low(self, playlist: str, until: float) -> None:
        listing = await self._read(playlist)
        if listing is None or listing.part_hold_back is None or not listing.parts:
            raise HttpError(0, "no LL-HLS playlist to start from")
        self.limit = listing.part_hold_back + 1.0
        await self._start(playlist, listing)
        queue: asyncio.Queue[Media] = asyncio.Queue()
        for part in listing.parts[-3:]:
            queue.put_nowait(part)
        fetcher = asyncio.create_task(self._fetch_parts(playlist, queue))
        glue = "&" if "?" in playlist else "?"
        newest = listing.parts[-1]
        try:
            while time.monotonic() < until:
                assert newest.part is not None
                query = f"_HLS_msn={newest.msn}&_HLS_part={newest.part + 1}&_HLS_skip=YES"
                got = await self._read(f"{playlist}{glue}{query}")
                if got is None or not got.parts:
                    continue
                for part in got.parts:
                    if part.number > newest.number:
                        queue.put_nowait(part)
                newest = max(newest, got.parts[-1], key=lambda p: p.number)
        finally:
            fetcher.cancel()

    async def _fetch_parts(self, playlist: str, queue: asyncio.Queue[Media]) -> None:
        while True:
            await self._fetch(playlist, await queue.get())


async def _sample(players: list[Player], until: float, lags: Counter[int]) -> list[float]:
    """Sample every player's lag every ``SAMPLE_EVERY`` s; return how late each round ran."""
    late: list[float] = []
    due = time.monotonic()
    while due < until:
        due += SAMPLE_EVERY
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        now = time.monotonic()
        late.append(now - due)
        wall = time.time()
        for player in players:
            player.observe(now, wall, lags)
    return late


async def _play(kind: str, master: str, count: int, first: int, seconds: float) -> dict[str, Any]:
    """Run ``count`` players (addresses from ``first``) for ``seconds``; return the tally."""
    parts = urlsplit(master)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    players = [Player(kind, host, port, source_address(first + i)) for i in range(count)]
    ramp = min(5.0, seconds / 3)
    until = time.monotonic() + seconds
    lags: Counter[int] = Counter()
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    runs = [
        asyncio.create_task(player.run(target_of(master), i * ramp / count, until))
        for i, player in enumerate(players)
    ]
    late = await _sample(players, until, lags)
    await asyncio.gather(*runs)
    used = resource.getrusage(resource.RUSAGE_SELF)
    failures = Counter(p.failure for p in players if p.failure)
    return {
        "players": count,
        "started": sum(1 for p in players if p.end is not None),
        "fell": sum(1 for p in players if p.fell_at is not None),
        "errors": dict(sum((p.errors for p in players), Counter())),
        "joining": sum(1 for p in players if p.end is None and p.failure is None),
        "failures": dict(failures.most_common(3)),
        "requests": sum(p.lists.requests + p.media.requests for p in players),
        "reopened": sum(p.lists.reopened + p.media.reopened for p in players),
        "bytes": sum(p.lists.received + p.media.received for p in players),
        "lags": dict(lags),
        "late": sorted(late),
        "cpu": used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime,
        "wall": time.monotonic() - started,
    }


@dataclass
class Step:
    """One count of one kind of player, all processes together (seconds; CPU in cores)."""

    kind: str
    count: int
    processes: int
    started: int = 0
    fell: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    joining: int = 0  # players still joining when the time was up (no failure, no media)
    reopened: int = 0  # kept-alive connections the server had closed, opened again
    failures: Counter[str] = field(default_factory=Counter)
    requests_per_s: float = 0.0
    mb_per_s: float = 0.0
    lags: Counter[int] = field(default_factory=Counter)
    late_p99: float = 0.0
    generator_cpu: float = 0.0
    server_cpu: float = 0.0
    machine_cpu: float = 0.0  # cores busy on the whole machine (everyone's work)
    pressure: float = 0.0  # share of the time some runnable task waited for a CPU

    @property
    def held(self) -> bool:
        """Tell whether every player started and none fell behind."""
        return self.started == self.count and self.fell == 0

    def lag(self, q: float) -> float:
        """Return the ``q`` quantile of the lag samples (seconds, 10 ms resolution)."""
        total = sum(self.lags.values())
        if not total:
            return math.nan
        seen = 0
        for bucket in sorted(self.lags):
            seen += self.lags[bucket]
            if seen >= q * total:
                return bucket / 100
        return max(self.lags) / 100


def machine_now() -> tuple[float, float]:
    """Return (CPU seconds the whole machine has been busy, seconds of CPU pressure).

    Pressure is Linux's PSI "some" line: time in which a runnable task waited for a CPU
    (0 where /proc/pressure is missing).
    """
    fields = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    busy = (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
    try:
        line = Path("/proc/pressure/cpu").read_text().split("\n", 1)[0]
    except OSError:
        return busy, 0.0
    return busy, int(line.rsplit("total=", 1)[1]) / 1e6


def _step(kind: str, master: str, count: int, seconds: float, pids: list[int]) -> Step:
    """Run ``count`` players of ``kind`` for ``seconds`` in child processes; return the step."""
    shares = [min(PER_PROCESS, count - first) for first in range(0, count, PER_PROCESS)]
    server_before, wall_before = _cpu_seconds(pids), time.monotonic()
    machine_before = machine_now()
    module = [PYTHON, "-m", "bench.delivery_players", kind, master]
    children = [
        subprocess.Popen(
            [*module, str(share), str(index * PER_PROCESS), f"{seconds:g}"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )
        for index, share in enumerate(shares)
    ]
    try:
        outs = [child.communicate(timeout=seconds + 120)[0] for child in children]
    finally:
        for child in children:  # only after a timeout or an interrupt is one still running
            if child.poll() is None:
                child.kill()
                child.wait(timeout=10)
    wall = time.monotonic() - wall_before
    step = Step(kind, count, len(children))
    step.server_cpu = (_cpu_seconds(pids) - server_before) / wall
    machine = machine_now()
    step.machine_cpu = (machine[0] - machine_before[0]) / wall
    step.pressure = (machine[1] - machine_before[1]) / wall
    late: list[float] = []
    for out, child in zip(outs, children, strict=True):
        if child.returncode != 0:
            raise RuntimeError(f"a player process exited with status {child.returncode}")
        tally = json.loads(out)
        step.started += tally["started"]
        step.fell += tally["fell"]
        step.errors.update(tally["errors"])
        step.joining += tally["joining"]
        step.reopened += tally["reopened"]
        step.failures.update(tally["failures"])
        step.requests_per_s += tally["requests"] / tally["wall"]
        step.mb_per_s += tally["bytes"] / tally["wall"] / 1e6
        step.lags.update({int(k): v for k, v in tally["lags"].items()})
        step.generator_cpu += tally["cpu"] / tally["wall"]
        late.extend(tally["late"])
    late.sort()
    step.late_p99 = late[min(len(late) - 1, round(0.99 * (len(late) - 1)))] if late else 0.0
    return step


def held(
    kind: str, master: str, counts: tuple[int, ...], seconds: float, pids: list[int]
) -> list[Step]:
    """Run rising ``counts`` of players of ``kind``; stop after the first count not held."""
    steps = []
    for count in counts:
        try:
            step = _step(kind, master, count, seconds, pids)
        except (RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
            step = Step(kind, count, 0)  # nobody started: not held, the reason shown
            step.failures[f"load generator: {exc}"[:120]] += 1
        steps.append(step)
        print(f"  viewers held, {kind}, {count:,} players: "
              f"{'held' if step.held else 'NOT held'} ({step.fell} fell behind, "
              f"{count - step.started} did not start, {step.errors.total()} failed requests; "
              f"lag p99 {step.lag(0.99):.2f} s; players' CPU {step.generator_cpu:.2f}, "
              f"server {step.server_cpu:.2f} cores)", flush=True)  # fmt: skip
        if not step.held:
            break
    return steps


def _main(arguments: list[str]) -> None:
    kind, master, count, first, seconds = arguments
    try:
        import uvloop  # ships with uvicorn[standard]
    except ImportError:  # pragma: no cover
        run = asyncio.run
    else:
        run = uvloop.run
    tally = run(_play(kind, master, int(count), int(first), float(seconds)))
    json.dump(tally, sys.stdout)


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] in ("standard", "low"):
        _main(sys.argv[1:])
    else:
        sys.exit("usage: python -m bench.delivery_players standard|low MASTER COUNT FIRST SECONDS")

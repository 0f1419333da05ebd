"""Soak: one 720p stream pushed into one ``stagecast serve`` for an hour, its memory sampled.

A live session must not grow the server: every structure kept per segment (playlist windows,
telemetry windows, archive queues, snapshots) is bounded, so after a warm-up the server's
resident memory should stay flat however long the stream runs. The server runs as its own
process on SQLite (its RSS is the server's alone); a real ffmpeg publishes a pre-encoded 720p
file over RTMP in a loop, in real time, with ``-c copy``; the server's RSS is read from
``/proc`` every 10 s and its accepted segments from ``/metrics`` (a scrape, as Prometheus would).

Prints RSS after the warm-up, at the end and its peak, the drift (end minus warm-up), the
least-squares slope over the measured samples, and both per segment. Target: drift <= 5 MiB.
``--minutes`` sets the length (default 60); ``--quick`` runs a few minutes.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.chat_servers import STAGECAST, free_port
from bench.ingest import FFMPEG, _looped_copy, _make_source
from stagecast.auth import service as accounts
from stagecast.channels import service as channels
from stagecast.config import Settings
from stagecast.db import open_database
from stagecast.db.migrate import upgrade

SAMPLE_EVERY = 10.0  # seconds between RSS samples
TARGET_DRIFT_MIB = 5.0
_SEGMENTS = re.compile(r"^stagecast_ingest_segments_total (\S+)$", re.MULTILINE)


@dataclass
class Samples:
    """RSS (MiB) and accepted segments, each at seconds since the publisher started."""

    at: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    segments: list[int] = field(default_factory=list)

    def add(self, at: float, rss: float, segments: int) -> None:
        """Record one sample."""
        self.at.append(at)
        self.rss.append(rss)
        self.segments.append(segments)

    def slope(self, first: int) -> float:
        """Return the least-squares slope of RSS over segments from sample ``first`` (MiB)."""
        xs, ys = self.segments[first:], self.rss[first:]
        if len(xs) < 2 or xs[-1] == xs[0]:
            return 0.0
        mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
        spread = sum((x - mean_x) ** 2 for x in xs)
        return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _segments(client: httpx.Client, port: int) -> int:
    text = client.get(f"http://127.0.0.1:{port}/metrics", timeout=5.0).text
    found = _SEGMENTS.search(text)
    return int(float(found.group(1))) if found else 0


async def _prepare(data_dir: Path) -> str:
    """Create the database, a broadcaster and channel ``soak``; return its stream key."""
    settings = Settings(_env_file=None, data_dir=data_dir, secret_key="bench")  # type: ignore[call-arg]
    db = open_database(settings)
    try:
        await upgrade(db)
        owner = await accounts.create_account(db, "soak-owner", "bench-password", "broadcaster")
        _, key = await channels.create_channel(db, owner, "soak")
    finally:
        await db.dispose()
    return key


def _server(
    data_dir: Path,
    port: int,
    rtmp_port: int,
    *,
    workers: int = 1,
    database_url: str | None = None,
    redis_url: str | None = None,
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "STAGECAST_DATA_DIR": str(data_dir),
        "STAGECAST_PORT": str(port),
        "STAGECAST_HOST": "127.0.0.1",
        "STAGECAST_RTMP_PORT": str(rtmp_port),
        "STAGECAST_RTMP_HOST": "127.0.0.1",
        "STAGECAST_SECRET_KEY": "bench-secret-key",
        "STAGECAST_ADMIN_PASSWORD": "bench-admin-password",
        "STAGECAST_LOG_LEVEL": "warning",
    }
    for name in ("STAGECAST_DATABASE_URL", "STAGECAST_REDIS_URL", "STAGECAST_METRICS_TOKEN"):
        env.pop(name, None)
    if database_url:
        env["STAGECAST_DATABASE_URL"] = database_url
    if redis_url:
        env["STAGECAST_REDIS_URL"] = redis_url
    command = [STAGECAST, "serve", *(["--workers", str(workers)] if workers > 1 else [])]
    return subprocess.Popen(command, cwd=data_dir, env=env)


def _wait_ready(client: httpx.Client, port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if client.get(f"http://127.0.0.1:{port}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"the server was not ready after {timeout:.0f} s")


def _soak(source: Path, data_dir: Path, key: str, seconds: float) -> Samples:
    """Publish ``source`` for ``seconds`` into a fresh server, sampling it every 10 s."""
    port, rtmp_port = free_port(), free_port()
    server = _server(data_dir, port, rtmp_port)
    samples = Samples()
    try:
        with httpx.Client() as client:
            _wait_ready(client, port)
            publisher = subprocess.Popen(
                [*_looped_copy(source, seconds), "-f", "flv",
                 f"rtmp://127.0.0.1:{rtmp_port}/live/{key}"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            started = time.monotonic()
            try:
                while publisher.poll() is None:
                    # The wait is the sampling period, not a synchronisation.
                    time.sleep(SAMPLE_EVERY - (time.monotonic() - started) % SAMPLE_EVERY)
                    if publisher.poll() is not None:
                        break
                    at = time.monotonic() - started
                    samples.add(at, _rss_mib(server.pid), _segments(client, port))
                    if len(samples.at) % 30 == 0:
                        print(f"  {at / 60:5.1f} min: RSS {samples.rss[-1]:.1f} MiB, "
                              f"{samples.segments[-1]} segments", flush=True)  # fmt: skip
            finally:
                if publisher.poll() is None:
                    publisher.kill()
                publisher.wait(timeout=10)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
    return samples


def _report(samples: Samples, warmup: float, minutes: float) -> None:
    first = next((i for i, at in enumerate(samples.at) if at >= warmup), None)
    if first is None or first >= len(samples.at) - 1:
        print("  not enough samples after the warm-up")
        return
    start_rss, end_rss = samples.rss[first], samples.rss[-1]
    segments = samples.segments[-1] - samples.segments[first]
    drift = end_rss - start_rss
    slope = samples.slope(first)
    per_segment = drift * 1024 * 1024 / segments if segments else float("nan")
    print(f"source: 1280x720 30 fps, 2.5 Mbit/s, 2 s GOP, one stream for {minutes:g} min; "
          f"RSS every {SAMPLE_EVERY:g} s")  # fmt: skip
    print(f"{'':34}{'warm-up':>12}{'end':>12}{'peak':>12}")
    print(f"{'RSS (MiB)':34}{start_rss:>12.1f}{end_rss:>12.1f}{max(samples.rss[first:]):>12.1f}")
    print(f"{'segments accepted':34}{samples.segments[first]:>12}{samples.segments[-1]:>12}")
    print(f"{'drift, end - warm-up (MiB)':34}{drift:>+12.2f}")
    print(f"{'drift per segment (bytes)':34}{per_segment:>+12.0f}")
    print(f"{'fitted slope per segment (bytes)':34}{slope * 1024 * 1024:>+12.0f}")
    print(f"{'fitted slope per day (MiB)':34}{slope * 43_200:>+12.1f}")
    verdict = "met" if abs(drift) <= TARGET_DRIFT_MIB else "MISSED"
    print(f"target: RSS drift after warm-up <= {TARGET_DRIFT_MIB:g} MiB "
          f"(got {drift:+.2f} MiB over {segments} segments): {verdict}")  # fmt: skip


def run(quick: bool, minutes: float | None = None) -> None:
    """Run the soak (``minutes`` long; default 60, or 3 with ``quick``) and print the figures."""
    minutes = minutes if minutes is not None else (3.0 if quick else 60.0)
    seconds = minutes * 60
    # Caches, pools and the first VOD-less minutes settle early; measure after them.
    warmup = min(120.0, seconds / 3)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source = _make_source(folder, 60)
        data_dir = folder / "data"
        data_dir.mkdir()
        key = asyncio.run(_prepare(data_dir))
        print(f"  publishing for {minutes:g} min (warm-up {warmup:.0f} s) with {FFMPEG}",
              flush=True)  # fmt: skip
        samples = _soak(source, data_dir, key, seconds)
    _report(samples, warmup, minutes)

"""Ingest at scale: N concurrent passthrough RTMP streams into one Stagecast process.

Prints, side by side with a baseline measured in the same run:
- server work per segment (receipt of a whole segment → playlist updated), p50/p99, ms;
- live-edge latency: wall clock when a segment is listed minus the wall clock at which the
  encoder sent its first frame (the worst frame of the segment), p50/p99, s;
- CPU used by the Stagecast process and its ffmpeg packagers.

Baseline: ffmpeg alone, reading the same file in real time and writing HLS to disk (what an
RTMP-to-HLS relay without Stagecast would list), for the latency; one stream alone, for the
per-segment work. Encoders stream a pre-encoded file with ``-c copy`` so that they cost little
CPU and the machine's two cores go to the server.

First, what hostile peers without a stream key cost a ``stagecast serve`` child process (its
CPU per connection and RSS, /healthz meanwhile): tiny chunks, half-sent big messages, idle
sockets holding slots while a publisher tries to get in; baseline: a whole setup's cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import imageio_ffmpeg
import uvicorn

from stagecast.app import create_app
from stagecast.auth import service as accounts
from stagecast.channels import service as channels
from stagecast.config import Settings
from stagecast.ingest.rtmp import RtmpLimits, amf0, replies
from stagecast.ingest.rtmp import chunks as rtmp
from stagecast.ingest.rtmp.chunks import ChunkEncoder, ChunkReader, Message
from stagecast.ingest.rtmp.errors import RtmpError
from stagecast.live.hooks import SegmentEvent

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _make_source(folder: Path, seconds: int) -> Path:
    path = folder / "source.flv"
    subprocess.run(
        [
            FFMPEG,
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1280x720:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            str(seconds),
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-b:v",
            "2500k",
            "-g",
            "60",
            "-keyint_min",
            "60",
            "-sc_threshold",
            "0",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-b:a",
            "128k",
            "-f",
            "flv",
            "-y",
            str(path),
        ],
        check=True,
        timeout=300,
    )
    return path


def _looped_copy(source: Path, seconds: float) -> list[str]:
    """ffmpeg reading ``source`` in a loop, in real time, copying it (an encoder's stand-in)."""
    return [
        FFMPEG, "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1",
        "-i", str(source), "-c", "copy", "-t", str(seconds),
    ]  # fmt: skip


def _cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


async def _serve(settings: Settings, stack: AsyncExitStack) -> tuple[object, int]:
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error"))
    task = asyncio.create_task(server.serve())

    async def stop() -> None:
        server.should_exit = True
        await asyncio.wait_for(task, 30)

    stack.push_async_callback(stop)
    while not server.started:
        await asyncio.sleep(0.05)
    return app, app.state.runtime.ingest.rtmp.port


async def _stagecast_run(source: Path, streams: int, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            data_dir=Path(tmp),
            secret_key="bench",
            port=0,
            rtmp_port=0,
            rtmp_host="127.0.0.1",
            log_level="error",
            reconnect_grace_seconds=1,
            # Every encoder runs on this machine: one source address for all of them.
            rtmp_max_connections_per_address=max(16, streams),
        )
        async with AsyncExitStack() as stack:
            app, port = await _serve(settings, stack)
            core = app.state.runtime.core  # type: ignore[attr-defined]
            work: list[float] = []
            latency: list[float] = []
            started: dict[int, float] = {}

            def observe(event: SegmentEvent) -> None:
                work.append(event.work_seconds)
                t0 = started.get(event.channel_id)
                if t0 is not None and event.sequence > 0:
                    latency.append(time.time() - (t0 + event.start_time))

            app.state.runtime.live.hooks.on_segment.append(observe)  # type: ignore[attr-defined]
            owner = await accounts.create_account(core.db, "bench", "password123", "broadcaster")
            keys = []
            for i in range(streams):
                created, key = await channels.create_channel(core.db, owner, f"bench-{i}")
                keys.append((created.id, key))
            publishers = []
            for channel_id, key in keys:
                started[channel_id] = time.time()
                publishers.append(
                    await asyncio.create_subprocess_exec(
                        *_looped_copy(source, seconds),
                        "-f",
                        "flv",
                        f"rtmp://127.0.0.1:{port}/live/{key}",
                        stdout=asyncio.subprocess.DEVNULL,
                        stderr=asyncio.subprocess.DEVNULL,
                    )
                )
            await asyncio.sleep(5)
            cpu_pids = [os.getpid(), *_packager_pids()]
            cpu_before, wall_before = _cpu_seconds(cpu_pids), time.monotonic()
            await asyncio.sleep(max(seconds - 10, 5))
            cpu_pids = [os.getpid(), *_packager_pids()]
            cpu = (_cpu_seconds(cpu_pids) - cpu_before) / (time.monotonic() - wall_before)
            for process in publishers:
                await process.wait()
    return {
        "segments": len(work),
        "work_p50_ms": _percentile(work, 0.5) * 1000,
        "work_p99_ms": _percentile(work, 0.99) * 1000,
        "latency_p50_s": _percentile(latency, 0.5),
        "latency_p99_s": _percentile(latency, 0.99),
        "cpu_cores": cpu,
    }


def _packager_pids() -> list[int]:
    """Return the pids of this process's child ffmpeg packagers (they read FLV on stdin)."""
    me = str(os.getpid())
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[1] == me and b"pipe:0" in cmdline:
            pids.append(int(entry.name))
    return pids


async def _ffmpeg_alone(source: Path, seconds: float) -> dict[str, float]:
    """Baseline: ffmpeg writes HLS itself; latency = when its playlist lists a segment."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        t0 = time.time()
        process = await asyncio.create_subprocess_exec(
            *_looped_copy(source, seconds),
            "-f",
            "hls",
            "-hls_time",
            "2",
            "-hls_segment_type",
            "fmp4",
            "-hls_list_size",
            "0",
            "-hls_flags",
            "+temp_file",
            str(out / "index.m3u8"),
        )
        seen: set[str] = set()
        latency: list[float] = []
        media_time = 0.0
        while process.returncode is None:
            await asyncio.sleep(0.02)
            playlist = out / "index.m3u8"
            if not playlist.exists():
                continue
            lines = playlist.read_text().splitlines()
            for i, line in enumerate(lines):
                if line.startswith("#EXTINF") and i + 1 < len(lines) and lines[i + 1] not in seen:
                    seen.add(lines[i + 1])
                    if len(seen) > 1:
                        latency.append(time.time() - (t0 + media_time))
                    media_time += float(line.split(":")[1].rstrip(","))
        await process.wait()
    return {
        "latency_p50_s": _percentile(latency, 0.5),
        "latency_p99_s": _percentile(latency, 0.99),
    }


# -- hostile peers: what an unauthenticated RTMP connection costs the server ------------------


class _Server:
    """``stagecast serve`` in a child process, so its CPU and RSS are its own."""

    def __init__(self, folder: Path) -> None:
        self.http_port, self.rtmp_port = _free_port(), _free_port()
        env = {
            **os.environ,
            "STAGECAST_DATA_DIR": str(folder),
            "STAGECAST_PORT": str(self.http_port),
            "STAGECAST_RTMP_HOST": "127.0.0.1",
            "STAGECAST_RTMP_PORT": str(self.rtmp_port),
            "STAGECAST_ADMIN_PASSWORD": "bench-password",
            "STAGECAST_LOG_LEVEL": "error",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stagecast", "serve"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def ready(self) -> None:
        async with httpx.AsyncClient() as client, asyncio.timeout(60):
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(self.url("/healthz"))).status_code == 200:
                        return
                await asyncio.sleep(0.1)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"

    def cpu(self) -> float:
        return _cpu_seconds([self.process.pid])

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class _Peer:
    """A raw RTMP client that can misbehave."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.encoder = ChunkEncoder()

    @classmethod
    async def open(cls, port: int, source: str = "127.0.0.1") -> _Peer:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        return cls(reader, writer)

    async def handshake(self) -> None:
        self.writer.write(b"\x03" + bytes(1536))
        await self.reader.readexactly(1 + 2 * 1536)
        self.writer.write(bytes(1536))
        await self.writer.drain()

    def send(self, csid: int, message: Message) -> None:
        self.writer.write(self.encoder.encode(csid, message))

    async def answered(self, timeout: float = 60) -> str:
        """Send a ping; return "answered" once the server replies, "closed" if it hangs up."""
        self.send(2, Message(rtmp.USER_CONTROL, 0, 0, b"\x00\x06" + bytes(4)))
        try:
            await self.writer.drain()
            reader = ChunkReader(self.reader, RtmpLimits())
            async with asyncio.timeout(timeout):
                while True:
                    message = await reader.read_message()
                    if message.type_id == rtmp.USER_CONTROL and message.payload[:2] == b"\x00\x07":
                        return "answered"
        except (OSError, asyncio.IncompleteReadError, RtmpError):
            return "closed"

    async def publish(self, key: str) -> str:
        """Connect and publish ``key``; return the status code the server answers with."""
        await self.handshake()
        reader = ChunkReader(self.reader, RtmpLimits())
        self.send(3, replies.command("connect", 1.0, {"app": "live", "tcUrl": "rtmp://x/live"}))
        self.send(3, replies.command("createStream", 2.0, None))
        self.send(3, replies.command("publish", 0.0, None, key, "live", stream_id=1))
        await self.writer.drain()
        while True:
            message = await reader.read_message()
            if message.type_id == rtmp.COMMAND_AMF0:
                values = amf0.decode_values(message.payload)
                if values[0] == "onStatus" and isinstance(values[3], dict):
                    return str(values[3]["code"])

    def close(self) -> None:
        self.writer.transport.abort()


async def _healthz_worst(server: _Server, stop: asyncio.Event) -> float:
    """Poll /healthz until ``stop``; return the slowest answer (s)."""
    worst = 0.0
    async with httpx.AsyncClient() as client:
        while not stop.is_set():
            started = time.perf_counter()
            await client.get(server.url("/healthz"), timeout=30)
            worst = max(worst, time.perf_counter() - started)
            await asyncio.sleep(0.05)
    return worst


def _big_message(encoder: ChunkEncoder) -> bytes:
    """A 500 kB AMF data message in the encoder's chunks."""
    return encoder.encode(4, Message(rtmp.DATA_AMF0, 0, 0, b"\x05" * 500_000))


def _empty_messages(encoder: ChunkEncoder) -> bytes:
    """An empty data message, then 500,000 one-byte type-3 headers: each another one."""
    return encoder.encode(4, Message(rtmp.DATA_AMF0, 0, 0, b"")) + b"\xc4" * 500_000


async def _cpu_attack(
    server: _Server, chunk_size: int, attack: Callable[[ChunkEncoder], bytes], peers: int
) -> tuple[float, float, str]:
    """``peers`` connections in turn send ``attack`` at ``chunk_size``, no stream key.

    Returns the server's CPU per connection (ms), the slowest /healthz meanwhile (s), and how
    the last one ended ("answered": the server read it all and answered a ping; "closed").
    """
    stop = asyncio.Event()
    probe = asyncio.create_task(_healthz_worst(server, stop))
    cpu, outcome = 0.0, ""
    for _ in range(peers):
        peer = await _Peer.open(server.rtmp_port)
        await peer.handshake()
        peer.send(2, rtmp.set_chunk_size(chunk_size))
        peer.encoder.chunk_size = chunk_size
        data = attack(peer.encoder)
        before = server.cpu()
        peer.writer.write(data)
        outcome = await peer.answered()
        cpu += server.cpu() - before
        peer.close()
    stop.set()
    return cpu / peers * 1000, await probe, outcome


async def _setup_cost(server: _Server, connections: int) -> float:
    """Server CPU (ms) of one connect + createStream + publish with an unknown key."""
    before = server.cpu()
    for _ in range(connections):
        peer = await _Peer.open(server.rtmp_port)
        await peer.publish("not-a-key")
        peer.close()
    return (server.cpu() - before) / connections * 1000


async def _memory_attack(server: _Server, peers: int) -> tuple[float, float, float, int]:
    """``peers`` connections each leave two 8 MiB messages half sent: RSS before/held/after."""
    before = server.rss_mib()
    opened = []
    half = 12 + 64 * 65537 - 1  # a type-0 header and 64 chunks of 64 KiB: 4 MiB of 8 MiB
    for _ in range(peers):
        peer = await _Peer.open(server.rtmp_port)
        await peer.handshake()
        peer.send(2, rtmp.set_chunk_size(65536))
        peer.encoder.chunk_size = 65536
        for csid in (4, 5):
            whole = peer.encoder.encode(csid, Message(rtmp.VIDEO, 0, 0, bytes(8 * 1024 * 1024)))
            peer.writer.write(whole[:half])
        opened.append(peer)
    outcomes = await asyncio.gather(*(peer.answered() for peer in opened))
    held = server.rss_mib()
    for peer in opened:
        peer.close()
    await asyncio.sleep(3)  # let the server notice every close and free what it held
    return before, held, server.rss_mib(), outcomes.count("closed")


async def _slot_attack(server: _Server, idle: int, sources: list[str]) -> tuple[int, str]:
    """Hold ``idle`` idle TCP connections from ``sources``; then a publisher from 127.0.0.2."""
    held = []
    for number in range(idle):
        with contextlib.suppress(OSError):
            held.append(await _Peer.open(server.rtmp_port, sources[number % len(sources)]))
    await asyncio.sleep(0.5)  # the server accepts (or refuses) them all
    alive = [p for p in held if not p.reader.at_eof()]
    try:
        async with asyncio.timeout(10):
            outcome = await (await _Peer.open(server.rtmp_port, "127.0.0.2")).publish("not-a-key")
    except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
        outcome = f"refused ({type(exc).__name__})"
    for peer in held:
        peer.close()
    return len(alive), outcome


async def _hostile(folder: Path) -> None:
    server = _Server(folder)
    try:
        await server.ready()
        title = "hostile peer (no stream key), 5 in turn"
        print(f"{title:58}{'CPU ms each':>13}{'/healthz worst s':>17}")
        for size, attack, label in (
            (1, _big_message, "500 kB data message, chunk size 1"),
            (4096, _big_message, "500 kB data message, chunk size 4096"),
            (1, _empty_messages, "500,000 empty messages, 1 byte each"),
        ):
            cpu, worst, outcome = await _cpu_attack(server, size, attack, 5)
            print(f"{label + f' ({outcome})':58}{cpu:>13.1f}{worst:>17.3f}")
        setup = await _setup_cost(server, 50)
        label = "baseline: connect + createStream + publish, per connection"
        print(f"{label:58}{setup:>13.1f}")
        before, held, after, closed = await _memory_attack(server, 30)
        print(
            f"30 peers x two 8 MiB messages half sent: RSS {before:.0f} MiB → {held:.0f} MiB "
            f"held ({(held - before) / 30:.2f} MiB each, {closed} closed early) → {after:.0f} MiB"
            " after they close"
        )
        for idle, sources, label in (
            (600, ["127.0.0.1"], "one address"),
            (600, [f"127.0.1.{i}" for i in range(1, 201)], "200 addresses"),
        ):
            alive, outcome = await _slot_attack(server, idle, sources)
            print(f"{idle} idle connections from {label}: {alive} held open; publisher: {outcome}")
    finally:
        server.stop()


def hostile() -> None:
    """Print what hostile, unauthenticated RTMP peers cost a running server."""
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_hostile(Path(tmp)))


def run(quick: bool) -> None:
    """Run the ingest benchmark and print the figures (hostile peers first: a few seconds)."""
    hostile()
    streams = 10 if quick else 50
    seconds = 25.0 if quick else 70.0
    with tempfile.TemporaryDirectory() as tmp:
        source = _make_source(Path(tmp), 20)
        baseline = asyncio.run(_ffmpeg_alone(source, 16.0))
        single = asyncio.run(_stagecast_run(source, 1, 20.0))
        many = asyncio.run(_stagecast_run(source, streams, seconds))
    print(f"source: 1280x720 30 fps, 2.5 Mbit/s, 2 s GOP; {os.cpu_count()} cores")
    print(f"{'':34}{'ffmpeg alone':>14}{'1 stream':>12}{f'{streams} streams':>12}")
    print(f"{'segments handled':34}{'':>14}{single['segments']:>12.0f}{many['segments']:>12.0f}")
    for label, key, unit in (
        ("server work per segment p50", "work_p50_ms", "ms"),
        ("server work per segment p99", "work_p99_ms", "ms"),
        ("live-edge latency p50", "latency_p50_s", "s"),
        ("live-edge latency p99", "latency_p99_s", "s"),
        ("CPU (cores busy)", "cpu_cores", ""),
    ):
        base = baseline.get(key)
        base_text = f"{base:>14.3f}" if base is not None else f"{'':>14}"
        name = label + (f" ({unit})" if unit else "")
        print(f"{name:34}{base_text}{single[key]:>12.3f}{many[key]:>12.3f}")
    print(
        f"targets: {streams} streams, work p99 ≤ 5 ms (got {many['work_p99_ms']:.2f}), "
        f"live edge ≤ 6 s (got p99 {many['latency_p99_s']:.2f} s; "
        f"ffmpeg alone {baseline['latency_p99_s']:.2f} s)"
    )

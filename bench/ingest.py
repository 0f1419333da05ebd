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
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

import imageio_ffmpeg
import uvicorn

from stagecast.app import create_app
from stagecast.auth import service as accounts
from stagecast.channels import service as channels
from stagecast.config import Settings
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


def run(quick: bool) -> None:
    """Run the ingest benchmark and print the figures."""
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

"""The real ffmpeg in tests: publish a test pattern over RTMP, decode what came out."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg

FPS = 30


def ffmpeg() -> str:
    """Return the ffmpeg binary of the imageio-ffmpeg wheel."""
    return str(imageio_ffmpeg.get_ffmpeg_exe())


H264 = ("-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-g", "60")
HEVC = ("-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error")


@contextlib.asynccontextmanager
async def publishing(
    url: str,
    *,
    seconds: float,
    size: str = "640x360",
    video: tuple[str, ...] = H264,
    audio: bool = True,
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run ffmpeg publishing testsrc2 (+ a sine as AAC) to ``url`` in real time.

    The process is killed and reaped on exit if it is still running.
    """
    sine = ("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000")
    process = await asyncio.create_subprocess_exec(
        ffmpeg(),
        *("-hide_banner", "-loglevel", "error", "-nostdin", "-re"),
        *("-f", "lavfi", "-i", f"testsrc2=size={size}:rate={FPS}"),
        *(sine if audio else ()),
        *video,
        *("-pix_fmt", "yuv420p", "-t", str(seconds)),
        *(("-c:a", "aac", "-b:a", "96k") if audio else ()),
        *("-f", "flv", url),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await process.communicate()


async def finished(process: asyncio.subprocess.Process, timeout: float) -> tuple[int, str]:
    """Wait up to ``timeout`` seconds for ffmpeg to exit; return its exit code and stderr."""
    async with asyncio.timeout(timeout):
        _, stderr = await process.communicate()
    assert process.returncode is not None
    return process.returncode, stderr.decode(errors="replace")


@dataclass(frozen=True)
class Decoded:
    """What ffmpeg decoded from a file."""

    codec: str
    width: int
    height: int
    video_frames: int
    audio_seconds: float


async def decode(path: Path, *, audio: bool = True, timeout: float = 30.0) -> Decoded:
    """Decode every frame of ``path`` with ffmpeg (framecrc) and describe the result."""
    process = await asyncio.create_subprocess_exec(
        ffmpeg(),
        *("-hide_banner", "-nostats", "-v", "info", "-i", str(path)),
        *("-map", "0:v:0", *(("-map", "0:a:0") if audio else ()), "-f", "framecrc", "-"),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(timeout):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode(errors="replace")
    width = height = frames = samples = 0
    sample_rate = 1
    codec = ""
    for line in err.decode().splitlines():
        if "Video:" in line and not codec:
            codec = line.split("Video:")[1].split()[0]
    for line in out.decode().splitlines():
        if line.startswith("#dimensions 0:"):
            width, height = (int(v) for v in line.split(":")[1].strip().split("x"))
        elif line.startswith("#sample_rate 1:"):
            sample_rate = int(line.split(":")[1])
        elif line.startswith("0,"):
            frames += 1
        elif line.startswith("1,"):
            samples += int(line.split(",")[3])
    return Decoded(codec, width, height, frames, samples / sample_rate)

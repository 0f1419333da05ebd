"""Grab one frame of a recording as a JPEG with ffmpeg, bounded in time.

An fMP4 media segment only decodes after its init segment, so the two (read from storage by
the caller) are concatenated into a temporary file that ffmpeg reads. ffmpeg runs as a
subprocess with a timeout; it is killed on timeout or cancellation, so nothing outlives the call.
"""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
from pathlib import Path

WIDTH = 640


class ThumbnailError(Exception):
    """ffmpeg could not make a thumbnail (no video, broken media, timeout)."""


def _prepare(directory: Path, init: bytes, media: bytes) -> Path:
    source = directory / "frame.mp4"
    with open(source, "wb") as out:
        out.write(init)
        out.write(media)
    return source


async def grab_frame(ffmpeg: str, init: bytes, media: bytes, *, timeout: float) -> bytes:
    """Return the first video frame of ``init`` + ``media`` as JPEG bytes, at most 640 wide.

    Raises ThumbnailError if ffmpeg fails or takes longer than ``timeout`` seconds.
    """
    with tempfile.TemporaryDirectory(prefix="stagecast-thumb-") as scratch:
        directory = Path(scratch)
        source = await asyncio.to_thread(_prepare, directory, init, media)
        target = directory / "thumb.jpg"
        process = await asyncio.create_subprocess_exec(
            ffmpeg,
            *("-nostdin", "-v", "error", "-y", "-i", str(source)),
            *("-frames:v", "1", "-vf", f"scale='min({WIDTH},iw)':-2", "-q:v", "4"),
            str(target),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(timeout):
                _, stderr = await process.communicate()
        except BaseException as exc:
            process.kill()
            await process.wait()
            if isinstance(exc, TimeoutError):
                raise ThumbnailError(f"ffmpeg took longer than {timeout:g} s") from exc
            raise
        if process.returncode != 0 or not target.exists():
            tail = stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no frame"]
            raise ThumbnailError(f"ffmpeg exited with {process.returncode}: {tail[0]}")
        return await asyncio.to_thread(target.read_bytes)

"""One supervised ffmpeg process: FLV in on stdin, fragmented MP4 out on a pipe per rendition.

ffmpeg writes each rendition to a pipe of its own (``ladder.FIRST_FD`` + i); a reader per pipe
splits the stream into top-level boxes as they arrive and hands over the init segment
(``ftyp`` + ``moov``) and then every fragment (``moof`` + ``mdat``) at once: nothing polls a
directory and nothing touches the disk. The end of a rendition's output is reported with
``on_end``. Exit, crash or stall is detected and reported once through ``on_exit`` with the tail
of ffmpeg's stderr; nothing here ever waits without a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from stagecast.live.boxes import MediaError
from stagecast.live.ladder import FIRST_FD

log = logging.getLogger(__name__)

_WRITE_TIMEOUT = 10.0
_EXIT_TIMEOUT = 10.0
_STALL_CHECK = 1.0  # seconds between checks that ffmpeg still produces output
# A fragment is a frame or two; an init a few kB. Anything bigger is not ours to buffer.
MAX_BOX_BYTES = 64 * 1024 * 1024
_PIPE_BYTES = 1024 * 1024  # ask the kernel for pipes this large (F_SETPIPE_SZ)
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_INIT_BOXES = (b"ftyp", b"moov")
_SKIPPED_BOXES = (b"styp", b"sidx", b"free", b"skip", b"mfra", b"prft", b"uuid", b"emsg")

OnInit = Callable[[str, bytes], Awaitable[None]]
OnFragment = Callable[[str, bytes], Awaitable[None]]
OnEnd = Callable[[str], Awaitable[None]]
OnExit = Callable[["PackagerExit"], Awaitable[None]]


class PackagerGone(Exception):
    """ffmpeg is no longer taking input."""


@dataclass(frozen=True)
class PackagerExit:
    """How a packager ended."""

    returncode: int | None
    reason: str  # "finished", "exited", "stalled"
    stderr_tail: str


class Packager:
    """Run ``command`` (from ``stagecast.live.ladder``) and stream its fragments out."""

    def __init__(
        self,
        command: list[str],
        renditions: list[str],
        *,
        on_init: OnInit,
        on_fragment: OnFragment,
        on_end: OnEnd,
        on_exit: OnExit,
        stall_after: float,
    ) -> None:
        self._command = command
        self.renditions = renditions
        self._on_init = on_init
        self._on_fragment = on_fragment
        self._on_end = on_end
        self._on_exit = on_exit
        self._stall_after = stall_after
        self._process: asyncio.subprocess.Process | None = None
        self._stderr: deque[str] = deque(maxlen=30)
        self._tasks: list[asyncio.Task[None]] = []
        self._last_output = time.monotonic()
        self._last_input = time.monotonic()
        self._stopping: str | None = None
        self.exited = asyncio.Event()

    async def start(self) -> None:
        """Start ffmpeg with a pipe per rendition, and a reader on each."""
        pipes = [os.pipe() for _ in self.renditions]
        try:
            for _, write in pipes:
                with contextlib.suppress(OSError):  # a smaller pipe only means more wakeups
                    fcntl.fcntl(write, _F_SETPIPE_SZ, _PIPE_BYTES)
            # The ladder names rendition i's output pipe:FIRST_FD+i; the child inherits our
            # write ends under their own numbers, so the command names those instead.
            real = {f"pipe:{FIRST_FD + i}": f"pipe:{w}" for i, (_, w) in enumerate(pipes)}
            self._process = await asyncio.create_subprocess_exec(
                *[real.get(arg, arg) for arg in self._command],
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=[w for _, w in pipes],
            )
        finally:
            for _, write in pipes:
                os.close(write)
        self._last_output = self._last_input = time.monotonic()
        readers = [
            asyncio.create_task(self._read(name, read), name=f"packager-{name}")
            for name, (read, _) in zip(self.renditions, pipes, strict=True)
        ]
        self._tasks = [
            asyncio.create_task(self._read_stderr(), name="packager-stderr"),
            *readers,
        ]
        self._tasks.append(asyncio.create_task(self._watch(readers), name="packager-watch"))

    @property
    def pid(self) -> int | None:
        """Return ffmpeg's process id while it runs."""
        return self._process.pid if self._process else None

    async def write(self, data: bytes) -> None:
        """Feed FLV bytes to ffmpeg, waiting (bounded) while its pipe is full.

        Raises PackagerGone if ffmpeg has exited or does not drain its input in time.
        """
        process = self._process
        if process is None or process.stdin is None or process.returncode is not None:
            raise PackagerGone("packager is not running")
        self._last_input = time.monotonic()
        try:
            process.stdin.write(data)
            async with asyncio.timeout(_WRITE_TIMEOUT):
                await process.stdin.drain()
        except (BrokenPipeError, ConnectionResetError, TimeoutError) as exc:
            raise PackagerGone(f"packager stopped taking input: {type(exc).__name__}") from exc

    async def finish(self) -> None:
        """Close ffmpeg's input so it writes its last segment, and wait (bounded) for it to exit.

        ffmpeg is killed if it has not exited within the timeout.
        """
        process = self._process
        if process is None:
            return
        if self._stopping is None:
            self._stopping = "finished"
        if process.stdin is not None and not process.stdin.is_closing():
            process.stdin.close()
        try:
            async with asyncio.timeout(_EXIT_TIMEOUT):
                await self.exited.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            async with asyncio.timeout(_EXIT_TIMEOUT):
                await self.exited.wait()

    async def _read_stderr(self) -> None:
        assert self._process is not None
        assert self._process.stderr is not None
        async for raw in self._process.stderr:
            line = raw.decode(errors="replace").rstrip()
            if line:
                self._stderr.append(line)

    async def _watch(self, readers: list[asyncio.Task[None]]) -> None:
        process = self._process
        assert process is not None
        reason = "exited"
        # One wait for the whole run: a wait cancelled at every check would leave its future
        # behind in the subprocess transport (once a second, for as long as the stream runs).
        exited = asyncio.ensure_future(process.wait())
        try:
            while not exited.done():
                if self._stalled():
                    reason = "stalled"
                    log.warning("packager pid=%s stalled; killing it", process.pid)
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    break
                await asyncio.wait((exited,), timeout=_STALL_CHECK)
            await exited
            # Each reader ends at the end of its pipe, once it has handed over what was left.
            for task in readers:
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    async with asyncio.timeout(_EXIT_TIMEOUT):
                        await asyncio.shield(task)
                task.cancel()
        finally:
            for task in self._tasks[:1]:
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    async with asyncio.timeout(1.0):
                        await task
            await self._report(reason)

    def _stalled(self) -> bool:
        now = time.monotonic()
        fed_recently = now - self._last_input < 2.0
        return fed_recently and now - self._last_output > self._stall_after

    async def _report(self, reason: str) -> None:
        process = self._process
        code = process.returncode if process else None
        final = self._stopping or reason
        if final == "finished" and code not in (0, None):
            final = "exited"
        tail = "\n".join(self._stderr)
        if final != "finished":
            log.warning(
                "packager pid=%s %s (code %s): %s",
                process.pid if process else None,
                final,
                code,
                tail[-2000:] or "(no stderr)",
            )
        self.exited.set()
        await self._on_exit(PackagerExit(code, final, tail))

    async def _read(self, name: str, fd: int) -> None:
        """Read rendition ``name``'s fragmented MP4 from pipe ``fd``, box by box, to its end."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
        )
        try:
            await self._split(name, reader)
        except asyncio.IncompleteReadError:
            pass  # the end of the output (a box cut short by a crash is dropped)
        except MediaError as exc:
            log.warning(
                "packager pid=%s: %s output unreadable (%s); stopping it", self.pid, name, exc
            )
            if self._process is not None:
                with contextlib.suppress(ProcessLookupError):
                    self._process.kill()
        finally:
            transport.close()
            await self._hand(self._on_end(name))

    async def _split(self, name: str, reader: asyncio.StreamReader) -> None:
        """Hand over the init (``ftyp`` + ``moov``) once, then each ``moof`` + ``mdat``."""
        init = b""
        moof: bytes | None = None
        while True:
            kind, box = await _next_box(reader)
            self._last_output = time.monotonic()
            if kind in _INIT_BOXES and moof is None:
                init += box
                if kind == b"moov":
                    await self._hand(self._on_init(name, init))
                    init = b""
            elif kind == b"moof":
                moof = box
            elif kind == b"mdat" and moof is not None:
                await self._hand(self._on_fragment(name, moof + box))
                moof = None
            elif kind not in _SKIPPED_BOXES and kind != b"mdat":
                raise MediaError(f"unexpected {kind!r} box")

    async def _hand(self, handing: Awaitable[None]) -> None:
        try:
            await handing
        except Exception:  # a bad fragment or a storage hiccup must not orphan ffmpeg
            log.exception("packager pid=%s: handing over output failed", self.pid)


async def _next_box(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """Read one top-level ISO BMFF box: (type, the whole box). Raises MediaError, EOF."""
    header = await reader.readexactly(8)
    size, kind = struct.unpack(">I4s", header)
    if size == 1:
        large = await reader.readexactly(8)
        header += large
        (size,) = struct.unpack(">Q", large)
    if size < len(header) or size > MAX_BOX_BYTES:
        raise MediaError(f"box {kind!r} claims {size} bytes")
    return kind, header + await reader.readexactly(size - len(header))

"""One supervised ffmpeg process: FLV in on stdin, whole fMP4 segments out, one epoch.

The packager writes into a scratch directory; a watcher picks up each init segment and each
completed segment (ffmpeg renames them into place when whole), hands the bytes to the session
and deletes the scratch file. Exit, crash or stall is detected and reported once through
``on_exit`` with the tail of ffmpeg's stderr; nothing here ever waits without a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_SEGMENT = re.compile(r"^seg-(\d+)\.m4s$")
_POLL = 0.1
_WRITE_TIMEOUT = 10.0
_EXIT_TIMEOUT = 10.0

OnInit = Callable[[str, bytes], Awaitable[None]]
# The segment's bytes, and its scratch file, which the callee may move away (adopt).
OnSegment = Callable[[str, bytes, Path], Awaitable[None]]
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
    """Run ``command`` (from ``stagecast.live.ladder``) and stream its segments out."""

    def __init__(
        self,
        command: list[str],
        renditions: list[str],
        scratch: Path,
        *,
        on_init: OnInit,
        on_segment: OnSegment,
        on_exit: OnExit,
        stall_after: float,
    ) -> None:
        self._command = command
        self.renditions = renditions
        self._scratch = scratch
        self._on_init = on_init
        self._on_segment = on_segment
        self._on_exit = on_exit
        self._stall_after = stall_after
        self._process: asyncio.subprocess.Process | None = None
        self._stderr: deque[str] = deque(maxlen=30)
        self._tasks: list[asyncio.Task[None]] = []
        self._init_sent: set[str] = set()
        self._next: dict[str, int] = dict.fromkeys(renditions, 0)
        self._last_output = time.monotonic()
        self._last_input = time.monotonic()
        self._stopping: str | None = None
        self.exited = asyncio.Event()

    async def start(self) -> None:
        """Create the scratch directories and start ffmpeg."""
        for name in self.renditions:
            (self._scratch / name).mkdir(parents=True, exist_ok=True)
        self._process = await asyncio.create_subprocess_exec(
            *self._command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self._last_output = self._last_input = time.monotonic()
        self._tasks = [
            asyncio.create_task(self._read_stderr(), name="packager-stderr"),
            asyncio.create_task(self._watch(), name="packager-watch"),
        ]

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

    async def _watch(self) -> None:
        process = self._process
        assert process is not None
        reason = "exited"
        # One wait for the whole run: a wait cancelled at every poll would leave its future
        # behind in the subprocess transport (ten a second, for as long as the stream runs).
        exited = asyncio.ensure_future(process.wait())
        try:
            while not exited.done():
                await self._collect_safely()
                if self._stalled():
                    reason = "stalled"
                    log.warning("packager pid=%s stalled; killing it", process.pid)
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    break
                await asyncio.wait((exited,), timeout=_POLL)
            await exited
            await self._collect_safely()
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
        shutil.rmtree(self._scratch, ignore_errors=True)
        self.exited.set()
        await self._on_exit(PackagerExit(code, final, tail))

    async def _collect_safely(self) -> None:
        try:
            await self._collect()
        except Exception:  # a bad segment or a database hiccup must not orphan ffmpeg
            log.exception("packager pid=%s: handing over output failed", self.pid)

    async def _collect(self) -> None:
        """Hand over every new init and whole segment, in order, then delete them."""
        for name in self.renditions:
            folder = self._scratch / name
            ready = self._ready(folder, name)
            if name not in self._init_sent:
                # The init file is not renamed into place: it is whole once a segment follows.
                # ffmpeg names it init.mp4, or init_<n>.mp4 with a variant stream map.
                init = next(iter(sorted(folder.glob("init*.mp4"))), None)
                if init is None or not ready:
                    continue
                data = await asyncio.to_thread(init.read_bytes)
                # Marked sent only once taken: if handing it over fails, the next poll tries
                # again, and this rendition's segments wait in the scratch folder until then.
                await self._on_init(name, data)
                self._init_sent.add(name)
            for path in ready:
                data = await asyncio.to_thread(path.read_bytes)
                self._next[name] = int(_SEGMENT.match(path.name).group(1)) + 1  # type: ignore[union-attr]
                self._last_output = time.monotonic()
                try:
                    await self._on_segment(name, data, path)
                finally:
                    path.unlink(missing_ok=True)  # refused, or moved away already

    def _ready(self, folder: Path, name: str) -> list[Path]:
        found: list[tuple[int, Path]] = []
        with contextlib.suppress(FileNotFoundError):
            for entry in folder.iterdir():
                match = _SEGMENT.match(entry.name)
                if match and int(match.group(1)) >= self._next[name]:
                    found.append((int(match.group(1)), entry))
        return [p for _, p in sorted(found)]

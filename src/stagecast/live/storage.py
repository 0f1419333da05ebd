"""Where media files live: write-once files under server-built paths.

Paths are relative (``<channel_id>/<session_id>/<rendition>/<file>``) and stored in the
database. ``LocalStorage`` keeps them under the media root of this node's disk (the embedded
default); ``stagecast.live.objects.ObjectStorage`` in an S3 bucket, through a spool on this disk.
Either way a path is checked before use, so nothing escapes the storage, and a write goes to a
temporary file renamed into place, so a reader never sees half a segment and a crash never
leaves one under its final name. Media is written once (``write``); playlists are the only
files written again (``replace``).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from stagecast.errors import NotFound, ServiceUnavailable
from stagecast.fastpath import Reply

_SAFE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class StorageError(Exception):
    """A path was refused or a file could not be written."""


class StorageUnavailable(ServiceUnavailable):
    """The media storage cannot be read now (503, try again)."""

    code = "storage_unavailable"


def media_path(channel_id: int, session_id: int, rendition: str, filename: str) -> str:
    """Build the relative path of one media file from server-side values only."""
    for part in (rendition, filename):
        if not _SAFE_PART.fullmatch(part) or ".." in part:
            raise StorageError(f"unsafe path component {part!r}")
    return f"{channel_id}/{session_id}/{rendition}/{filename}"


def session_prefix(channel_id: int, session_id: int) -> str:
    """Return the directory of every file of a session (built from ids only)."""
    return f"{channel_id}/{session_id}"


def session_path(channel_id: int, session_id: int, filename: str) -> str:
    """Build the relative path of a file that belongs to the whole session (the master)."""
    if not _SAFE_PART.fullmatch(filename) or ".." in filename:
        raise StorageError(f"unsafe path component {filename!r}")
    return f"{channel_id}/{session_id}/{filename}"


def check_path(path: str) -> None:
    """Refuse a media path that is absolute, empty or carries separators no server path has."""
    if not path or path.startswith("/") or "\\" in path or "\x00" in path:
        raise StorageError("invalid media path")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise StorageError("invalid media path")


class SegmentStorage(Protocol):
    """Write-once media storage (``LocalStorage``, or ``live.objects.ObjectStorage``)."""

    # Whether ``signed_url`` makes URLs (a bucket does; a local disk does not).
    signs_urls: bool

    async def start(self) -> int:
        """Start background work (uploads left from a previous run); return their count."""

    async def close(self) -> None:
        """Stop background work."""

    async def write(self, path: str, data: bytes) -> int:
        """Store media at ``path`` once (never overwritten); return the byte count."""

    async def replace(self, path: str, data: bytes) -> int:
        """Store a new copy of the playlist at ``path``, after everything written before it."""

    async def read(self, path: str) -> bytes:
        """Return the bytes at ``path``; raises FileNotFoundError if there are none."""

    def local_file(self, path: str) -> Path | None:
        """Return the file on this disk that holds ``path`` (None: read it instead).

        Raises StorageError for a path that escapes the storage.
        """

    async def sizes(self, prefix: str) -> dict[str, int]:
        """Return the size of every stored file under ``prefix`` (a session), by path."""

    def key(self, path: str) -> str:
        """Return the name a CDN or the bucket's endpoint knows ``path`` by."""

    def signed_url(self, path: str, *, expires: float) -> str | None:
        """Return a URL that opens ``path`` for ``expires`` seconds (None: none can be made)."""

    def pending(self, prefix: str) -> int:
        """Return how many files under ``prefix`` are written but not stored for good yet."""

    async def delete_tree(self, prefix: str) -> None:
        """Remove everything under ``prefix`` (a session's directory)."""


class LocalStorage:
    """Media on the local disk (or a shared mount) under ``root``."""

    signs_urls = False

    def __init__(self, root: Path, *, fsync: bool = False) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync

    async def start(self) -> int:
        """Nothing runs in the background: return 0."""
        return 0

    async def close(self) -> None:
        """Nothing to stop."""

    def resolve(self, path: str) -> Path:
        """Return the file of ``path`` under the root; refuse absolute or escaping paths."""
        check_path(path)
        target = (self.root / path).resolve()
        if not target.is_relative_to(self.root):
            raise StorageError("media path escapes the media root")
        return target

    async def write(self, path: str, data: bytes) -> int:
        """Write ``data`` to a temp file beside ``path`` and rename it into place."""
        target = self.resolve(path)
        return await asyncio.to_thread(self._write, target, data)

    async def replace(self, path: str, data: bytes) -> int:
        """Write a new copy of ``path`` (the same temp file + rename)."""
        return await self.write(path, data)

    async def read(self, path: str) -> bytes:
        """Return the bytes at ``path``; raises FileNotFoundError if there are none."""
        target = self.resolve(path)
        return await asyncio.to_thread(target.read_bytes)

    def local_file(self, path: str) -> Path:
        """Return the file of ``path`` (every file is on this disk; it may not exist)."""
        return self.resolve(path)

    async def sizes(self, prefix: str) -> dict[str, int]:
        """Return the size of every file under the directory ``prefix``, by relative path."""
        top = self.resolve(prefix)
        return await asyncio.to_thread(self._sizes, top)

    def _sizes(self, top: Path) -> dict[str, int]:
        found: dict[str, int] = {}
        for file in top.rglob("*"):
            if file.is_file() and not file.name.endswith(".tmp"):
                found[file.relative_to(self.root).as_posix()] = file.stat().st_size
        return found

    def key(self, path: str) -> str:
        """Return ``path`` itself (a web server serving the media root knows it so)."""
        check_path(path)
        return path

    def signed_url(self, path: str, *, expires: float) -> None:
        """Return None: a local disk has no signed URLs (Stagecast serves private media)."""
        return

    def pending(self, prefix: str) -> int:
        """Every write is stored when it returns: 0."""
        return 0

    def _write(self, target: Path, data: bytes) -> int:
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        with open(temp, "wb") as handle:
            handle.write(data)
            if self._fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temp, target)
        return len(data)

    async def delete_tree(self, prefix: str) -> None:
        """Remove the directory ``prefix`` and everything in it (no error if missing)."""
        target = self.resolve(prefix)
        if target == self.root:
            raise StorageError("refusing to delete the media root")
        await asyncio.to_thread(shutil.rmtree, target, True)


async def stored_reply(
    storage: SegmentStorage, path: str, media_type: str, headers: Mapping[str, str]
) -> Reply:
    """Answer with the media at ``path``: its file on this disk, else its bytes in one read.

    Raises NotFound for a path that is not stored (or refused), StorageUnavailable (503) when
    the storage cannot be read now.
    """
    try:
        local = storage.local_file(path)
        if local is not None:
            return Reply.from_file(local, media_type, headers)
        return Reply.of(await storage.read(path), media_type, headers)
    except (FileNotFoundError, StorageError) as exc:
        raise NotFound("not found") from exc

"""Where media files live: write-once files under server-built paths.

Paths are relative (``<channel_id>/<session_id>/<rendition>/<file>``) and stored in the
database; ``resolve`` turns one back into a file under the media root and refuses anything
that would leave it. Writes go to a temporary file that is renamed into place, so a reader
never sees half a segment and a crash never leaves one under its final name.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from pathlib import Path
from typing import Protocol

_SAFE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class StorageError(Exception):
    """A path was refused or a file could not be written."""


def media_path(channel_id: int, session_id: int, rendition: str, filename: str) -> str:
    """Build the relative path of one media file from server-side values only."""
    for part in (rendition, filename):
        if not _SAFE_PART.fullmatch(part) or ".." in part:
            raise StorageError(f"unsafe path component {part!r}")
    return f"{channel_id}/{session_id}/{rendition}/{filename}"


def session_path(channel_id: int, session_id: int, filename: str) -> str:
    """Build the relative path of a file that belongs to the whole session (the master)."""
    if not _SAFE_PART.fullmatch(filename) or ".." in filename:
        raise StorageError(f"unsafe path component {filename!r}")
    return f"{channel_id}/{session_id}/{filename}"


class SegmentStorage(Protocol):
    """Write-once media storage."""

    async def write(self, path: str, data: bytes) -> int:
        """Store ``data`` at ``path`` (temp file + rename); return the byte count."""

    async def read(self, path: str) -> bytes:
        """Return the bytes at ``path``; raises FileNotFoundError if there are none."""

    def resolve(self, path: str) -> Path:
        """Return the local file of ``path``; raises StorageError if it escapes the root."""

    async def delete_tree(self, prefix: str) -> None:
        """Remove everything under ``prefix`` (a session's directory)."""


class LocalStorage:
    """Media on the local disk (or a shared mount) under ``root``."""

    def __init__(self, root: Path, *, fsync: bool = False) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync

    def resolve(self, path: str) -> Path:
        """Return the file of ``path`` under the root; refuse absolute or escaping paths."""
        if not path or path.startswith("/") or "\\" in path or "\x00" in path:
            raise StorageError("invalid media path")
        target = (self.root / path).resolve()
        if not target.is_relative_to(self.root):
            raise StorageError("media path escapes the media root")
        return target

    async def write(self, path: str, data: bytes) -> int:
        """Write ``data`` to a temp file beside ``path`` and rename it into place."""
        target = self.resolve(path)
        return await asyncio.to_thread(self._write, target, data)

    async def read(self, path: str) -> bytes:
        """Return the bytes at ``path``; raises FileNotFoundError if there are none."""
        target = self.resolve(path)
        return await asyncio.to_thread(target.read_bytes)

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

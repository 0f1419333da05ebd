"""Media on S3-compatible object storage, behind a bounded local spool.

``ObjectStorage`` is the ``SegmentStorage`` of a node whose media lives in a bucket
(``STAGECAST_STORAGE_URL=s3://BUCKET/PREFIX``). A write lands in the spool on this node's disk
first (temp file + rename, like ``LocalStorage``) and returns: the live edge never waits for the
bucket. Uploads then run in the background, per session in order, each retried with backoff
until the bucket has the object, and its spool file is removed; a spool left by a crash is
picked up again at start.

What the bucket is given keeps two rules:
- media (init segments, segments, thumbnails) is written create-only (``If-None-Match: *``),
  so a retry can never overwrite an object; a retry whose first try did land finds the object
  there and counts as stored (names are never reused, so it is ours);
- a playlist (``replace``) is uploaded only after every object written before it in its
  session, so a playlist in the bucket never lists an object that is not there yet; a newer
  copy of the same playlist waiting behind it makes the older one unnecessary.

The client is obstore (Rust's ``object_store`` crate: async, typed, plain S3 API with
conditional puts, presigned URLs, one small wheel); see the README.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import obstore
from obstore.exceptions import AlreadyExistsError
from obstore.store import S3Store

from stagecast.backoff import Backoff
from stagecast.cache import TtlCache
from stagecast.live.storage import StorageError, StorageUnavailable, check_path
from stagecast.stats import StatsSource

log = logging.getLogger(__name__)

Kind = Literal["create", "replace"]
_UPLOADS_PER_LANE = 4  # media objects of one session uploaded at once
_BACKOFF_FIRST, _BACKOFF_CAP = 0.25, 10.0
_TEMP_SUFFIX = ".tmp"


@dataclass(frozen=True)
class Bucket:
    """Where and how to reach the bucket (the ``STAGECAST_S3_*`` settings)."""

    name: str
    prefix: str
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    path_style: bool = False


def parse_storage_url(url: str) -> tuple[str, str]:
    """Return ``(bucket, prefix)`` of ``s3://BUCKET/PREFIX``. Raises ValueError."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"STAGECAST_STORAGE_URL must look like s3://BUCKET/PREFIX, not {url!r}")
    if parts.query or parts.fragment:
        raise ValueError("STAGECAST_STORAGE_URL takes no query or fragment")
    return parts.netloc, parts.path.strip("/")


def open_store(bucket: Bucket, *, timeout: float) -> S3Store:
    """Return the obstore client of ``bucket``; every request is bounded by ``timeout``.

    The client's own retries are off: the spool retries, with the one backoff rule.
    """
    config: dict[str, str] = {}
    if bucket.endpoint_url:
        config["endpoint"] = bucket.endpoint_url
    if bucket.region:
        config["region"] = bucket.region
    if bucket.access_key_id:
        config["access_key_id"] = bucket.access_key_id
    if bucket.secret_access_key:
        config["secret_access_key"] = bucket.secret_access_key
    if not bucket.access_key_id:
        config["skip_signature"] = "true"
    config["virtual_hosted_style_request"] = "false" if bucket.path_style else "true"
    http = bool(bucket.endpoint_url and bucket.endpoint_url.startswith("http://"))
    return S3Store(
        bucket.name,
        prefix=bucket.prefix or None,
        config=config,  # type: ignore[arg-type]
        client_options={
            "allow_http": http,
            "timeout": timedelta(seconds=timeout),
            "connect_timeout": timedelta(seconds=min(timeout, 5.0)),
        },
        retry_config={
            "max_retries": 0,
            "retry_timeout": timedelta(seconds=timeout),
            "backoff": {
                "init_backoff": timedelta(milliseconds=100),
                "max_backoff": timedelta(seconds=1),
                "base": 2,
            },
        },
    )


@dataclass(eq=False)
class _Item:
    path: str
    kind: Kind
    size: int
    since: float  # time.time() when it entered the spool


@dataclass
class _Lane:
    """The uploads of one session, in the order they were written."""

    items: deque[_Item] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None


@dataclass(frozen=True)
class SpoolState:
    """What waits in the spool now (for ``/metrics`` and the stream's health)."""

    files: int
    bytes: int
    oldest_seconds: float
    failing: bool
    last_error: str | None


class ObjectStorage:
    """Write-once media in a bucket, written through a bounded spool on the local disk."""

    signs_urls = True

    def __init__(
        self,
        store: S3Store,
        spool: Path,
        *,
        max_bytes: int,
        prefix: str = "",
        describe: str = "the bucket",
        recent_files: int = 64,
    ) -> None:
        self._store = store
        self.spool = spool.resolve()
        self.spool.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.prefix = prefix.strip("/")
        self.describe = describe
        self._lanes: dict[str, _Lane] = {}
        self._bytes = 0
        self._files = 0
        self._started = False
        self._closed = False
        self.failures = 0
        self.stored = 0
        self.last_error: str | None = None
        self._failing: set[str] = set()
        self._drained = asyncio.Event()
        self._drained.set()
        self._recent: TtlCache[str, bytes] = TtlCache(max_entries=recent_files, ttl=300.0)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> int:
        """Pick up what a previous run left in the spool and start uploading it; return count."""
        found = await asyncio.to_thread(self._scan)
        for item in found:
            self._enqueue(item)
        self._started = True
        for key, lane in self._lanes.items():
            self._run(key, lane)
        if found:
            log.info("storage: %d file(s) left in the spool, uploading them", len(found))
        return len(found)

    async def close(self) -> None:
        """Stop uploading (what is left stays in the spool for the next start)."""
        self._closed = True
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _scan(self) -> list[_Item]:
        items: list[tuple[int, _Item]] = []
        for file in self.spool.rglob("*"):
            if not file.is_file():
                continue
            if file.name.endswith(_TEMP_SUFFIX):
                file.unlink(missing_ok=True)  # a write the crash interrupted: never acknowledged
                continue
            stat = file.stat()
            path = file.relative_to(self.spool).as_posix()
            kind: Kind = "replace" if path.endswith(".m3u8") else "create"
            items.append((stat.st_mtime_ns, _Item(path, kind, stat.st_size, stat.st_mtime)))
        return [item for _, item in sorted(items, key=lambda pair: pair[0])]

    # -- SegmentStorage ---------------------------------------------------------------------

    def resolve(self, path: str) -> Path:
        """Return the spool file of ``path`` (it exists only while the upload waits)."""
        check_path(path)
        target = (self.spool / path).resolve()
        if not target.is_relative_to(self.spool):
            raise StorageError("media path escapes the spool")
        return target

    def local_file(self, path: str) -> Path | None:
        """Return None: a spool file may be uploaded and removed while it is being sent, so
        replies read the bytes (``read``: the spool, recent reads, else the bucket)."""
        self.resolve(path)
        return None

    async def write(self, path: str, data: bytes) -> int:
        """Spool ``data`` for a create-only upload to ``path``; return the byte count.

        Raises StorageError when the spool is full (the bucket has been away too long).
        """
        return await self._spool(path, data, "create")

    async def replace(self, path: str, data: bytes) -> int:
        """Spool a new copy of the playlist at ``path``; uploaded after what came before it."""
        return await self._spool(path, data, "replace")

    async def _spool(self, path: str, data: bytes, kind: Kind) -> int:
        target = self.resolve(path)
        if self._bytes + len(data) > self.max_bytes:
            raise StorageError(
                f"the storage spool is full ({self._bytes} bytes wait for {self.describe})"
            )
        await asyncio.to_thread(_write_file, target, data)
        lane = self._lanes.get(_lane_key(path))
        if kind == "replace" and lane is not None:
            # An older copy still waiting is not needed: this one goes last, after what it names.
            for old in [item for item in lane.items if item.path == path]:
                lane.items.remove(old)
                self._forget(old)
        self._enqueue(_Item(path, kind, len(data), time.time()))
        return len(data)

    def _enqueue(self, item: _Item) -> None:
        key = _lane_key(item.path)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        lane.items.append(item)
        self._bytes += item.size
        self._files += 1
        self._drained.clear()
        if self._started:
            self._run(key, lane)

    def _run(self, key: str, lane: _Lane) -> None:
        if lane.task is None and not self._closed:
            lane.task = asyncio.get_running_loop().create_task(
                self._drain(key, lane), name=f"spool-{key}"
            )

    async def read(self, path: str) -> bytes:
        """Return the bytes at ``path`` (from the spool while it waits there).

        Raises FileNotFoundError if there are none, StorageUnavailable if the bucket cannot be
        read now.
        """
        local = self.resolve(path)
        if local.is_file():
            with contextlib.suppress(FileNotFoundError):  # uploaded meanwhile: read the bucket
                return await asyncio.to_thread(local.read_bytes)
        if path.endswith(".m3u8"):
            return await self._get(path)
        # Media never changes: one GET for the many viewers asking at once, kept a while.
        return await self._recent.get(path, partial(self._get, path))

    async def _get(self, path: str) -> bytes:
        try:
            result = await obstore.get_async(self._store, path)
            return bytes(await result.bytes_async())
        except FileNotFoundError:
            raise
        except Exception as exc:
            log.warning("storage: cannot read %s: %s", path, _first_line(exc))
            raise StorageUnavailable("media storage cannot be read now, try again") from exc

    async def sizes(self, prefix: str) -> dict[str, int]:
        """Return the size of every object under ``prefix`` in the bucket (not the spool).

        Raises StorageUnavailable if the bucket cannot be listed now.
        """
        check_path(prefix)
        found: dict[str, int] = {}
        try:
            async for batch in obstore.list(self._store, prefix, chunk_size=1000):
                for meta in batch:
                    found[meta["path"]] = meta["size"]
        except Exception as exc:
            raise StorageUnavailable(f"cannot list {prefix} in {self.describe}: {exc}") from exc
        return found

    async def delete_tree(self, prefix: str) -> None:
        """Remove every object under ``prefix``, in the spool and in the bucket."""
        check_path(prefix)
        lane = self._lanes.get(_lane_key(prefix + "/x"))
        if lane is not None:
            for item in lane.items:
                self._forget(item)
            lane.items.clear()
        self._recent.clear()  # a VOD purged: nothing of it may be served from memory
        paths = list(await self.sizes(prefix))
        try:
            for start in range(0, len(paths), 1000):
                await obstore.delete_async(self._store, paths[start : start + 1000])
        except Exception as exc:
            raise StorageUnavailable(f"cannot delete {prefix} in {self.describe}: {exc}") from exc

    def pending(self, prefix: str) -> int:
        """Return how many files under ``prefix`` (a session) still wait for the bucket."""
        lane = self._lanes.get(_lane_key(prefix.rstrip("/") + "/x"))
        return len(lane.items) if lane is not None else 0

    def spooling(self) -> list[int]:
        """Return the sessions with files waiting in the spool (the node beat carries them)."""
        found = []
        for key, lane in self._lanes.items():
            session = key.split("/")[-1]
            if lane.items and session.isdigit():
                found.append(int(session))
        return found

    async def drained(self, timeout: float) -> bool:
        """Wait (bounded) until the spool is empty; True if it is."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._drained.wait()
        return self._drained.is_set()

    def state(self) -> SpoolState:
        """Return what waits in the spool now."""
        oldest = min(
            (lane.items[0].since for lane in self._lanes.values() if lane.items),
            default=None,
        )
        age = max(0.0, time.time() - oldest) if oldest is not None else 0.0
        return SpoolState(self._files, self._bytes, age, bool(self._failing), self.last_error)

    def stats(self) -> StatsSource:
        """The spool's counters for ``/metrics``."""

        def read() -> dict[str, float]:
            state = self.state()
            return {
                "spool_files": state.files,
                "spool_bytes": state.bytes,
                "spool_oldest_seconds": state.oldest_seconds,
                "uploads": self.stored,
                "upload_failures": self.failures,
            }

        return StatsSource(
            "storage",
            read,
            gauges=frozenset({"spool_files", "spool_bytes", "spool_oldest_seconds"}),
            help={
                "spool_files": "Media files written here and not yet stored in the bucket",
                "spool_bytes": "Bytes in the spool waiting for the bucket",
                "spool_oldest_seconds": "Age of the oldest file waiting in the spool",
                "uploads": "Objects stored in the bucket from the spool",
                "upload_failures": "Uploads to the bucket that failed (each is retried)",
            },
        )

    # -- uploads ----------------------------------------------------------------------------

    async def _drain(self, key: str, lane: _Lane) -> None:
        backoff = Backoff(_BACKOFF_FIRST, _BACKOFF_CAP)
        try:
            while lane.items:
                batch = list(_next_batch(lane.items))
                errors = await asyncio.gather(*(self._upload(item) for item in batch))
                failed = [e for e in errors if e is not None]
                for item, error in zip(batch, errors, strict=True):
                    if error is None and item in lane.items:
                        lane.items.remove(item)
                        self._forget(item)
                if failed:
                    self.failures += len(failed)
                    self.last_error = failed[0]
                    if key not in self._failing:
                        log.warning(
                            "storage: uploads of %s to %s fail (%s); retrying",
                            key, self.describe, failed[0],
                        )  # fmt: skip
                    self._failing.add(key)
                    await asyncio.sleep(backoff.next_delay())
                    continue
                if backoff.reset() and key in self._failing:
                    self._failing.discard(key)
                    log.info("storage: uploads of %s to %s work again", key, self.describe)
        finally:
            lane.task = None
            if not lane.items and self._lanes.get(key) is lane:
                del self._lanes[key]
            if not self._lanes:
                self._failing.clear()
                self._drained.set()

    async def _upload(self, item: _Item) -> str | None:
        """Upload one spooled file; None when the bucket has it, else the error's text."""
        local = self.resolve(item.path)
        try:
            data = await asyncio.to_thread(local.read_bytes)
        except FileNotFoundError:
            return None  # replaced by a newer copy meanwhile, or deleted with its VOD
        mode: Literal["create", "overwrite"] = "create" if item.kind == "create" else "overwrite"
        try:
            await obstore.put_async(self._store, item.path, data, mode=mode, use_multipart=False)
        except AlreadyExistsError:
            pass  # an earlier try of ours landed (names are never reused)
        except Exception as exc:
            return _first_line(exc)
        self.stored += 1
        if item.kind == "replace":
            await asyncio.to_thread(_unlink_if_same, local, data)
        else:
            await asyncio.to_thread(local.unlink, True)
        return None

    def _forget(self, item: _Item) -> None:
        self._bytes -= item.size
        self._files -= 1

    def key(self, path: str) -> str:
        """Return the object key of ``path`` (under the bucket's prefix)."""
        check_path(path)
        return f"{self.prefix}/{path}" if self.prefix else path

    def signed_url(self, path: str, *, expires: float) -> str:
        """Return a presigned GET URL of ``path`` that expires after ``expires`` seconds."""
        check_path(path)
        return obstore.sign(self._store, "GET", path, timedelta(seconds=expires))


def _next_batch(items: deque[_Item]) -> Iterator[_Item]:
    """The next uploads of a lane: a playlist alone, or up to a few media objects before one."""
    head = items[0]
    if head.kind == "replace":
        yield head
        return
    for count, item in enumerate(items):
        if item.kind == "replace" or count >= _UPLOADS_PER_LANE:
            return
        yield item


def _lane_key(path: str) -> str:
    """Return the session a path belongs to (``<channel>/<session>``; VOD files too)."""
    parts = path.split("/")
    return "/".join(parts[:2]) if len(parts) > 2 else parts[0]


def _write_file(target: Path, data: bytes) -> None:
    """Write ``data`` at ``target`` (temp file + rename: whole or not there).

    No fsync: the live edge waits for this write, and a killed process loses nothing the
    kernel holds; a power cut may lose the last seconds, as with ``LocalStorage``.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{os.getpid()}{_TEMP_SUFFIX}")
    with open(temp, "wb") as handle:
        handle.write(data)
    os.replace(temp, target)


def _unlink_if_same(local: Path, data: bytes) -> None:
    """Remove a playlist's spool file unless a newer copy was written over it meanwhile."""
    with contextlib.suppress(FileNotFoundError):
        if local.read_bytes() == data:
            local.unlink()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]

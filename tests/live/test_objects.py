"""Media in an S3 bucket through the spool: against a real S3-API server (moto, an emulator)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from stagecast.config import Settings
from stagecast.errors import ServiceUnavailable
from stagecast.live.objects import ObjectStorage, _Item, _next_batch, parse_storage_url
from stagecast.live.runtime import open_storage
from stagecast.live.storage import StorageError
from tests.s3 import S3Server


def _open(server: S3Server, bucket: str, data_dir: Path, **extra: object) -> ObjectStorage:
    settings = Settings(data_dir=data_dir, **server.settings(bucket), **extra)  # type: ignore[arg-type]
    storage = open_storage(settings)
    assert isinstance(storage, ObjectStorage)
    return storage


@pytest.fixture
async def bucket(s3: S3Server) -> str:
    return s3.bucket()


@pytest.fixture
async def storage(s3: S3Server, bucket: str, tmp_path: Path) -> AsyncIterator[ObjectStorage]:
    opened = _open(s3, bucket, tmp_path)
    await opened.start()
    yield opened
    await opened.close()


async def _until(check: object, timeout: float = 20.0) -> None:
    """Poll ``check()`` (observable state) until it holds, within ``timeout``."""
    async with asyncio.timeout(timeout):
        while not check():  # type: ignore[operator]
            await asyncio.sleep(0.05)


async def test_a_write_ends_in_the_bucket_and_leaves_the_spool(
    storage: ObjectStorage, s3: S3Server, bucket: str
) -> None:
    await storage.write("1/2/source/seg-00000000.m4s", b"segment bytes")
    assert await storage.drained(20)
    assert s3.get(bucket, "media/1/2/source/seg-00000000.m4s") == b"segment bytes"
    assert storage.local_file("1/2/source/seg-00000000.m4s") is None  # the disk is not filling
    assert await storage.read("1/2/source/seg-00000000.m4s") == b"segment bytes"
    assert await storage.sizes("1/2") == {"1/2/source/seg-00000000.m4s": 13}
    assert storage.stats().read()["uploads"] == 1


async def test_media_is_never_overwritten(
    storage: ObjectStorage, s3: S3Server, bucket: str
) -> None:
    """Create-only: a second write of a name (a retry, a replayed crash) keeps the first."""
    await storage.write("1/2/source/init-0.mp4", b"first")
    assert await storage.drained(20)
    await storage.write("1/2/source/init-0.mp4", b"second")
    assert await storage.drained(20)
    assert s3.get(bucket, "media/1/2/source/init-0.mp4") == b"first"
    assert storage.state().files == 0  # the refused retry counts as stored, not as failing


async def test_playlists_are_replaced(storage: ObjectStorage, s3: S3Server, bucket: str) -> None:
    await storage.replace("1/2/source/index.m3u8", b"#EXTM3U\n1")
    await storage.replace("1/2/source/index.m3u8", b"#EXTM3U\n2")
    assert await storage.drained(20)
    assert s3.get(bucket, "media/1/2/source/index.m3u8") == b"#EXTM3U\n2"


async def test_missing_objects_and_bad_paths(storage: ObjectStorage) -> None:
    with pytest.raises(FileNotFoundError):
        await storage.read("1/2/source/seg-00000099.m4s")
    for bad in ("", "/etc/passwd", "1/../../x", "1//x", "a\\b", "1/2/\x00"):
        with pytest.raises(StorageError):
            await storage.write(bad, b"x")
        with pytest.raises(StorageError):
            await storage.read(bad)


async def test_delete_tree_removes_a_sessions_objects(
    storage: ObjectStorage, s3: S3Server, bucket: str
) -> None:
    for n in range(3):
        await storage.write(f"1/2/source/seg-{n:08d}.m4s", b"x" * n)
    await storage.write("1/3/source/seg-00000000.m4s", b"other session")
    assert await storage.drained(20)
    await storage.delete_tree("1/2")
    assert set(s3.keys(bucket)) == {"media/1/3/source/seg-00000000.m4s"}


async def test_presigned_urls_open_private_objects(
    storage: ObjectStorage, s3: S3Server, bucket: str
) -> None:
    await storage.write("1/2/vod-thumb.jpg", b"jpeg")
    assert await storage.drained(20)
    async with httpx.AsyncClient() as client:
        response = await client.get(storage.signed_url("1/2/vod-thumb.jpg", expires=60))
    assert response.status_code == 200
    assert response.content == b"jpeg"


async def test_an_outage_waits_in_the_spool_and_nothing_is_lost(
    own_s3: S3Server, tmp_path: Path
) -> None:
    """The bucket stops answering: writes return at once from the spool, readable here; the
    spool's size, age and failures are reported; once the bucket is back every file lands."""
    bucket = own_s3.bucket()
    storage = _open(own_s3, bucket, tmp_path)
    await storage.start()
    try:
        own_s3.pause()
        async with asyncio.timeout(5):  # the live edge never waits for the bucket
            for n in range(5):
                await storage.write(f"1/2/source/seg-{n:08d}.m4s", b"m" * 1000)
            await storage.replace("1/2/source/index.m3u8", b"#EXTM3U")
        assert await storage.read("1/2/source/seg-00000003.m4s") == b"m" * 1000
        await _until(lambda: storage.state().failing)
        state = storage.state()
        assert (state.files, state.bytes) == (6, 5007)
        assert state.last_error
        assert storage.pending("1/2") == 6
        assert storage.stats().read()["upload_failures"] >= 1
        own_s3.resume()
        assert await storage.drained(30)
        keys = own_s3.keys(bucket, "media/1/2/")
        assert len(keys) == 6
        assert storage.state().failing is False
        assert not any(p.is_file() for p in storage.spool.rglob("*"))
    finally:
        own_s3.resume()
        await storage.close()


async def test_a_restart_uploads_what_the_spool_kept(own_s3: S3Server, tmp_path: Path) -> None:
    bucket = own_s3.bucket()
    first = _open(own_s3, bucket, tmp_path)
    await first.start()
    own_s3.pause()
    try:
        await first.write("1/2/source/seg-00000000.m4s", b"kept")
        await first.close()  # the process stops with the bucket away
        own_s3.resume()
        second = _open(own_s3, bucket, tmp_path)
        assert await second.start() == 1
        assert await second.drained(30)
        await second.close()
    finally:
        own_s3.resume()
    assert own_s3.get(bucket, "media/1/2/source/seg-00000000.m4s") == b"kept"


async def test_a_full_spool_refuses_writes(own_s3: S3Server, tmp_path: Path) -> None:
    bucket = own_s3.bucket()
    storage = _open(own_s3, bucket, tmp_path, storage_spool_bytes=1024 * 1024)
    await storage.start()
    own_s3.pause()
    try:
        await storage.write("1/2/source/seg-00000000.m4s", b"x" * 1000 * 1000)
        with pytest.raises(StorageError, match="spool is full"):
            await storage.write("1/2/source/seg-00000001.m4s", b"x" * 100 * 1000)
    finally:
        own_s3.resume()
        await storage.drained(30)
        await storage.close()


async def test_a_bucket_that_cannot_be_read_is_a_503(own_s3: S3Server, tmp_path: Path) -> None:
    storage = _open(own_s3, own_s3.bucket(), tmp_path)
    own_s3.pause()
    try:
        with pytest.raises(ServiceUnavailable):
            await storage.read("1/2/source/seg-00000000.m4s")
    finally:
        own_s3.resume()


@pytest.mark.parametrize(
    ("url", "expected"),
    [("s3://bkt/some/prefix", ("bkt", "some/prefix")), ("s3://bkt", ("bkt", ""))],
)
def test_storage_urls(url: str, expected: tuple[str, str]) -> None:
    assert parse_storage_url(url) == expected


@pytest.mark.parametrize("url", ["http://bkt/x", "s3:///x", "bkt/x", "s3://"])
def test_bad_storage_urls_are_refused_at_start(url: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="s3://BUCKET/PREFIX"):
        Settings(data_dir=tmp_path, storage_url=url)


@pytest.mark.parametrize("field", ["s3_endpoint_url", "media_base_url"])
@pytest.mark.parametrize("url", ["ftp://cdn.example.net", "cdn.example.net/media", "/media"])
def test_bad_base_urls_are_refused_at_start(field: str, url: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"http:// or https://"):
        Settings(data_dir=tmp_path, **{field: url})  # type: ignore[arg-type]


def test_a_playlist_goes_up_only_after_what_was_written_before_it() -> None:
    """A lane uploads the media before a playlist together, then the playlist alone, then
    what came after: the bucket never holds a playlist naming an object it does not have."""
    lane = deque(
        _Item(path, "replace" if path.endswith(".m3u8") else "create", 1, 0.0)
        for path in ("1/2/a/seg-1.m4s", "1/2/a/seg-2.m4s", "1/2/a/index.m3u8", "1/2/a/seg-3.m4s")
    )
    batches = []
    while lane:
        batch = list(_next_batch(lane))
        batches.append([item.path.rsplit("/", 1)[1] for item in batch])
        for item in batch:
            lane.remove(item)
    assert batches == [["seg-1.m4s", "seg-2.m4s"], ["index.m3u8"], ["seg-3.m4s"]]

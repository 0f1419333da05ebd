"""The measurements of the nodes bench: listing delay, bucket writes, spool drain.

``listing``: for each of N new segments, a blocking reload (``_HLS_msn`` = the segment after
the owner's newest) is held on both nodes at once, from this process; when it answers on the
owner the segment is listed there, when it answers on the other node it is listed there, and
that node is then asked for the segment's bytes. From the owner's answer on, the bucket is
polled (HEAD with a signed client, every 10 ms) until the segment's object exists. The node's
``stagecast_storage_uploads_total`` before and after gives the PUTs per segment.

``outage``: the S3 server is stopped (SIGSTOP: connections hang, nothing is lost) for a while
mid-stream and resumed; the owner's ``/metrics`` are read every 50 ms throughout, to see what
waited in its spool and how fast it left once the bucket answered again. Then the bucket is
listed: every segment from the first to the newest must be there.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import httpx
import obstore
from obstore.store import S3Store

from bench.delivery_client import Playlist, read_playlist
from bench.nodes_cluster import Cluster, Node, storage_metrics

_POLL = 0.01  # seconds between HEADs on the bucket
_SAMPLE = 0.05  # seconds between reads of /metrics during the outage
_SEGMENT = re.compile(r"seg-(\d+)\.m4s$")


@dataclass
class Listing:
    """Per segment, seconds after the owner listed it: listed on the other node, its bytes
    fetched there, its object in the bucket; and what the owner counted meanwhile."""

    listed: list[float] = field(default_factory=list)
    fetched: list[float] = field(default_factory=list)
    owner_fetch: list[float] = field(default_factory=list)  # the same GET on the owner, after
    stored: list[float] = field(default_factory=list)
    same_bytes: int = 0
    segments: int = 0
    uploads: float = 0.0
    upload_failures: float = 0.0
    segment_bytes: list[int] = field(default_factory=list)
    new_objects: dict[str, int] = field(default_factory=dict)  # by file type, in the window


@dataclass
class Drain:
    """What the owner's spool did around an outage of the bucket (seconds, files, bytes)."""

    paused: float
    peak_files: float = 0.0
    peak_bytes: float = 0.0
    peak_oldest: float = 0.0
    files_at_resume: float = 0.0
    bytes_at_resume: float = 0.0
    first_upload: float | None = None  # after the resume
    drained: float | None = None  # after the resume
    uploads_in_drain: float = 0.0
    failures: float = 0.0  # failed upload attempts (each retried) around the outage
    listed_meanwhile: int = 0  # segments the other node listed while the bucket was away
    in_bucket: int = 0
    missing: list[int] = field(default_factory=list)


def _filename(uri: str) -> str:
    return urlsplit(uri).path.rsplit("/", 1)[-1]


def _find(listing: Playlist, msn: int) -> str | None:
    return next((s.uri for s in listing.segments if s.msn == msn), None)


async def _blocking(client: httpx.AsyncClient, url: str, msn: int) -> tuple[float, str]:
    """Hold a blocking reload for segment ``msn``; return when it answered and its URI."""
    glue = "&" if "?" in url else "?"
    for _ in range(5):  # 503 once held past three target durations: ask again
        response = await client.get(f"{url}{glue}_HLS_msn={msn}")
        answered = time.monotonic()
        if response.status_code == 200:
            uri = _find(read_playlist(response.text), msn)
            if uri is not None:
                return answered, urljoin(url, uri)
        elif response.status_code != 503:
            raise RuntimeError(f"blocking reload: {response.status_code} {response.text[:200]}")
    raise RuntimeError(f"segment {msn} was not listed after five blocking reloads")


async def _in_bucket(store: S3Store, key: str, timeout: float = 60.0) -> float:
    """Poll the bucket until ``key`` exists; return when it was first seen (monotonic)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            await obstore.head_async(store, key)
            return time.monotonic()
        except FileNotFoundError:
            await asyncio.sleep(_POLL)  # polling with a deadline: the upload runs behind
    raise TimeoutError(f"{key} not in the bucket after {timeout:.0f} s")


async def _newest(client: httpx.AsyncClient, url: str) -> Playlist:
    response = await client.get(url)
    response.raise_for_status()
    return read_playlist(response.text)


def session_folder(cluster: Cluster, timeout: float = 60.0) -> str:
    """Return the bucket folder of the owner's newest segment (the session's rendition)."""
    newest = read_playlist(httpx.get(cluster.owner.playlist, timeout=10.0).text).segments[-1]
    filename = _filename(newest.uri)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for key in cluster.s3.keys(cluster.bucket, cluster.prefix + "/"):
            if key.endswith("/" + filename):
                return key.rsplit("/", 1)[0]
        time.sleep(0.2)  # polling with a deadline: the first upload runs behind the edge
    raise TimeoutError(f"{filename} not in the bucket after {timeout:.0f} s")


async def _one(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
    nodes: tuple[Node, Node],
    store: S3Store,
    folder: str,
    listing: Listing,
) -> None:
    """Measure one segment: the next one the owner will list."""
    on_owner, on_other = clients
    msn = (await _newest(on_owner, nodes[0].playlist)).segments[-1].msn + 1
    stored: list[asyncio.Task[float]] = []

    async def owner() -> float:
        answered, uri = await _blocking(on_owner, nodes[0].playlist, msn)
        stored.append(asyncio.create_task(_in_bucket(store, f"{folder}/{_filename(uri)}")))
        return answered

    async def other() -> tuple[float, float, bytes]:
        answered, uri = await _blocking(on_other, nodes[1].playlist, msn)
        media = await on_other.get(uri)
        media.raise_for_status()
        return answered, time.monotonic(), media.content

    owned, (listed, fetched, content) = await asyncio.gather(owner(), other())
    in_bucket = await stored[0]
    listing.listed.append(listed - owned)
    listing.fetched.append(fetched - owned)
    listing.stored.append(in_bucket - owned)
    uri = _find(await _newest(on_owner, nodes[0].playlist), msn)
    if uri is not None:
        started = time.monotonic()
        mine = await on_owner.get(urljoin(nodes[0].playlist, uri))
        listing.owner_fetch.append(time.monotonic() - started)
        listing.same_bytes += mine.content == content
    listing.segment_bytes.append(len(content))
    listing.segments += 1


async def _listing(cluster: Cluster, count: int, folder: str) -> Listing:
    listing = Listing()
    nodes = (cluster.owner, cluster.other)
    store = cluster.s3.store(cluster.bucket)
    before = storage_metrics(cluster.owner.base)
    keys_before = set(await asyncio.to_thread(cluster.s3.keys, cluster.bucket))
    async with (
        httpx.AsyncClient(timeout=30.0) as on_owner,
        httpx.AsyncClient(timeout=30.0) as on_other,
    ):
        for _ in range(count):
            await _one((on_owner, on_other), nodes, store, folder, listing)
    after = storage_metrics(cluster.owner.base)
    listing.uploads = after.get("uploads_total", 0.0) - before.get("uploads_total", 0.0)
    failures = "upload_failures_total"
    listing.upload_failures = after.get(failures, 0.0) - before.get(failures, 0.0)
    for key in set(await asyncio.to_thread(cluster.s3.keys, cluster.bucket)) - keys_before:
        kind = key.rsplit(".", 1)[-1] if "." in key.rsplit("/", 1)[-1] else "other"
        listing.new_objects[kind] = listing.new_objects.get(kind, 0) + 1
    return listing


def listing(cluster: Cluster, count: int, folder: str) -> Listing:
    """Measure ``count`` new segments (see the module); ``folder``: the session's in the bucket."""
    return asyncio.run(_listing(cluster, count, folder))


# -- the outage ----------------------------------------------------------------------------


async def _sample(
    base: str, until: asyncio.Event, samples: list[tuple[float, dict[str, float]]]
) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=5.0) as client:
        while not until.is_set():
            text = (await client.get("/metrics")).text
            figures = {
                line.split(" ")[0][len("stagecast_storage_") :]: float(line.split(" ")[1])
                for line in text.splitlines()
                if line.startswith("stagecast_storage_")
            }
            samples.append((time.monotonic(), figures))
            await asyncio.sleep(_SAMPLE)  # the sampling period, not a synchronisation


def _newest_msn(node: Node) -> int:
    return read_playlist(httpx.get(node.playlist, timeout=10.0).text).segments[-1].msn


async def _outage(cluster: Cluster, seconds: float, drain: Drain) -> None:
    samples: list[tuple[float, dict[str, float]]] = []
    done = asyncio.Event()
    sampler = asyncio.create_task(_sample(cluster.owner.base, done, samples))
    await asyncio.sleep(1.0)  # a second of samples before the outage
    listed_before = await asyncio.to_thread(_newest_msn, cluster.other)
    cluster.s3.pause()
    try:
        await asyncio.sleep(seconds)  # the length of the outage
        drain.listed_meanwhile = await asyncio.to_thread(_newest_msn, cluster.other) - listed_before
    finally:
        cluster.s3.resume()
    resumed = time.monotonic()
    start = len(samples)
    deadline = resumed + 300.0
    while time.monotonic() < deadline:
        if len(samples) > start and samples[-1][1].get("spool_files", 1.0) == 0.0:
            break
        await asyncio.sleep(_SAMPLE)  # polling with a deadline for the spool to empty
    done.set()
    await sampler
    _read_samples(samples, resumed, drain)


def _read_samples(
    samples: list[tuple[float, dict[str, float]]], resumed: float, drain: Drain
) -> None:
    failed = [figures.get("upload_failures_total", 0.0) for _, figures in samples]
    drain.failures = failed[-1] - failed[0] if failed else 0.0
    for _, figures in samples:
        drain.peak_files = max(drain.peak_files, figures.get("spool_files", 0.0))
        drain.peak_bytes = max(drain.peak_bytes, figures.get("spool_bytes", 0.0))
        drain.peak_oldest = max(drain.peak_oldest, figures.get("spool_oldest_seconds", 0.0))
    before = [figures for at, figures in samples if at <= resumed]
    after = [(at, figures) for at, figures in samples if at > resumed]
    if not before or not after:
        return
    last = before[-1]
    drain.files_at_resume = last.get("spool_files", 0.0)
    drain.bytes_at_resume = last.get("spool_bytes", 0.0)
    uploads = last.get("uploads_total", 0.0)
    for at, figures in after:
        if drain.first_upload is None and figures.get("uploads_total", 0.0) > uploads:
            drain.first_upload = at - resumed
        if figures.get("spool_files", 1.0) == 0.0:
            drain.drained = at - resumed
            drain.uploads_in_drain = figures.get("uploads_total", 0.0) - uploads
            return


def outage(cluster: Cluster, seconds: float, folder: str) -> Drain:
    """Stop the bucket for ``seconds`` mid-stream, resume it, and measure the drain."""
    drain = Drain(paused=seconds)
    asyncio.run(_outage(cluster, seconds, drain))
    numbers = sorted(
        int(found.group(1))
        for key in cluster.s3.keys(cluster.bucket, folder + "/")
        if (found := _SEGMENT.search(key))
    )
    drain.in_bucket = len(numbers)
    if numbers:
        drain.missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
    return drain

"""The stage of the nodes bench: two ``stagecast serve`` nodes on PostgreSQL, Redis and a bucket.

``cluster`` starts moto's S3 server (``tests.s3``: an emulator of the S3 API on 127.0.0.1; the
nodes speak plain S3 to it), a scratch PostgreSQL database, a Redis prefix of this run's own,
and two nodes with data directories of their own (no shared disk), configured as
``tests/integration/test_nodes.py`` configures its three. A low-latency channel is created with
the CLI and a real ffmpeg publishes the 720p source over RTMP to node 1 (the owner), looped in
real time. Everything is stopped, dropped and deleted when the block ends.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import httpx
import redis
from tests.s3 import S3Server, s3_server

from bench.chat import PG_ADMIN, REDIS
from bench.chat_servers import STAGECAST, free_port
from bench.chat_setup import scratch_database
from bench.delivery_client import Playlist, read_playlist
from bench.delivery_servers import _drop, _wait_port, stop
from bench.ingest import _looped_copy

SLUG = "nodes"
SECRET = "bench-nodes-secret"
_METRIC = re.compile(r"^stagecast_storage_(\w+) (\S+)$", re.MULTILINE)


@dataclass
class Node:
    """One running node: its name, base URL, process and the channel's media playlist URL."""

    name: str
    base: str
    process: subprocess.Popen[bytes]
    playlist: str = ""  # absolute, as a player gets it from this node's master


@dataclass
class Cluster:
    """The two nodes (``owner`` holds the encoder), the S3 server, the bucket and its prefix."""

    owner: Node
    other: Node
    s3: S3Server
    bucket: str
    prefix: str


def _env(
    data_dir: Path, name: str, port: int, rtmp_port: int, shared: dict[str, str]
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAGECAST_")}
    env.update(
        STAGECAST_DATA_DIR=str(data_dir),
        STAGECAST_HOST="127.0.0.1",
        STAGECAST_PORT=str(port),
        STAGECAST_RTMP_HOST="127.0.0.1",
        STAGECAST_RTMP_PORT=str(rtmp_port),
        STAGECAST_SECRET_KEY=SECRET,  # the same on every node: viewer URLs are signed
        STAGECAST_ADMIN_PASSWORD="bench-admin-password",
        STAGECAST_LOG_LEVEL="warning",
        STAGECAST_NODE_NAME=name,
        **shared,
    )
    return env


def _shared(s3: S3Server, bucket: str, database_url: str, prefix: str) -> dict[str, str]:
    """Return the settings every node has in common (the database, Redis, the bucket)."""
    storage = s3.settings(bucket, prefix="media")
    storage.pop("storage_timeout")  # the default, as a deployment has it
    return {
        "STAGECAST_DATABASE_URL": database_url,
        "STAGECAST_REDIS_URL": REDIS,
        "STAGECAST_REDIS_PREFIX": prefix,
        **{f"STAGECAST_{key.upper()}": str(value) for key, value in storage.items()},
    }


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [STAGECAST, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"stagecast {' '.join(args[:2])} failed: {done.stderr.strip()}")
    return done.stdout.strip().splitlines()[-1]


def _ready(base: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"a node exited with status {process.returncode} at start")
        try:
            if httpx.get(f"{base}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)  # polling with a deadline: migrations and the runtime start
    raise TimeoutError(f"{base} was not ready after {timeout:.0f} s")


def media_playlist(base: str, deadline: float, *, segments: int = 2) -> tuple[str, Playlist]:
    """Wait until the channel lists ``segments`` segments and parts on the node at ``base``;
    return the media playlist URL (the master's first variant, as a player gets it)."""
    with httpx.Client(base_url=base, timeout=5.0) as client:
        while time.monotonic() < deadline:
            status = client.get(f"/api/v1/channels/{SLUG}/live").json()
            if status.get("master_url"):
                master_url = str(client.base_url.join(status["master_url"]))
                master = client.get(master_url)
                variants = [ln for ln in master.text.splitlines() if ln and ln[0] != "#"]
                if master.status_code == 200 and variants:
                    url = urljoin(master_url, variants[0])
                    response = client.get(url)
                    if response.status_code == 200:
                        listing = read_playlist(response.text)
                        if len(listing.segments) >= segments and listing.parts:
                            return url, listing
            time.sleep(0.5)  # polling with a deadline: the first segments take a few seconds
    raise TimeoutError(f"{base}: the channel did not list {segments} segments in time")


def storage_metrics(base: str) -> dict[str, float]:
    """Return the node's ``stagecast_storage_*`` figures from ``/metrics`` (name → value)."""
    text = httpx.get(f"{base}/metrics", timeout=5.0).text
    return {name: float(value) for name, value in _METRIC.findall(text)}


def _forget_redis(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    finally:
        client.close()


def reachable() -> str | None:
    """Return why PostgreSQL or Redis cannot be used, or None when both answer."""
    try:
        redis.Redis.from_url(REDIS, socket_timeout=3).ping()
    except redis.RedisError as exc:
        return f"Redis at {REDIS} does not answer ({exc})"
    try:
        name = asyncio.run(scratch_database(PG_ADMIN, f"stagecast_bench_nodes_{os.getpid()}"))
    except (TimeoutError, OSError) as exc:
        return f"PostgreSQL at {PG_ADMIN} does not answer ({exc})"
    except Exception as exc:  # asyncpg's errors: no such user, no permission to create
        return f"PostgreSQL at {PG_ADMIN}: {exc}"
    _drop(name)
    return None


@contextmanager
def cluster(folder: Path, source: Path) -> Iterator[Cluster]:
    """Run two nodes with the channel on air from node 1; yield them (see the module)."""
    with ExitStack() as stack:
        s3 = stack.enter_context(s3_server())
        bucket = s3.bucket()
        database_url = asyncio.run(
            scratch_database(PG_ADMIN, f"stagecast_bench_nodes_{os.getpid()}")
        )
        stack.callback(_drop, database_url)
        prefix = f"bench-nodes-{uuid.uuid4().hex[:10]}"
        stack.callback(_forget_redis, prefix)
        shared = _shared(s3, bucket, database_url, prefix)
        nodes, rtmp_ports, envs = [], [], []
        for name in ("node1", "node2"):
            port, rtmp_port = free_port(), free_port()
            envs.append(_env(folder / name, name, port, rtmp_port, shared))
            rtmp_ports.append(rtmp_port)
            nodes.append((name, f"http://127.0.0.1:{port}"))
        _cli(envs[0], "user", "create", "caster", "--password", "bench-password")
        created = _cli(envs[0], "channel", "create", SLUG, "--owner", "caster", "--latency", "low")
        key = created.split(": ", 1)[1]
        running = []
        for (name, base), env in zip(nodes, envs, strict=True):
            process = subprocess.Popen(
                [STAGECAST, "serve"], env=env, cwd=folder,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            stack.callback(stop, process)
            running.append(Node(name, base, process))
        for node in running:
            _ready(node.base, node.process)
        _wait_port(rtmp_ports[0], running[0].process)
        publisher = subprocess.Popen(
            [*_looped_copy(source, 7200), "-f", "flv",
             f"rtmp://127.0.0.1:{rtmp_ports[0]}/live/{key}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        stack.callback(stop, publisher, 10.0)
        deadline = time.monotonic() + 90.0
        for node in running:
            node.playlist, _ = media_playlist(node.base, deadline)
        yield Cluster(running[0], running[1], s3, bucket, "media")

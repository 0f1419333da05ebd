"""The servers of the delivery bench: ``stagecast serve`` on air, nginx and a bare ASGI app.

``stagecast`` runs one ``stagecast serve`` on SQLite with two public channels on air from one
real ffmpeg each (RTMP, a pre-encoded 720p file looped in real time with ``-c copy``): ``SLUG``
with ``latency`` ``low`` (LL-HLS: parts, blocking reloads) and ``STANDARD_SLUG`` with
``standard``. Once the low channel has two segments, the newest segment, the newest part and
the media playlist are copied out of Stagecast (the segment from its data directory, the part
over HTTP: parts live in memory only) into a document root that nginx (one worker,
``sendfile on``) and the bare app (bytes in memory, on uvicorn like Stagecast) serve as they
are. A missing nginx, wrk or Chromium is installed with apt-get when the bench runs as root and
reaches the Debian mirror; otherwise its part is skipped with the reason (never a failure).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import asyncpg
import httpx

from bench.chat import PG_ADMIN, REDIS
from bench.chat_servers import PYTHON, ROOT, free_port
from bench.chat_setup import scratch_database
from bench.delivery_client import read_playlist
from bench.ingest import _looped_copy
from bench.soak import _server, _wait_ready
from stagecast.auth import service as accounts
from stagecast.channels import service as channels
from stagecast.config import Settings
from stagecast.db import open_database
from stagecast.db.migrate import upgrade

SLUG, STANDARD_SLUG = "delivery", "delivery-standard"
SEGMENT, PART, PLAYLIST = "segment.m4s", "part.m4s", "index.m3u8"
_TYPES = {
    SEGMENT: b"video/iso.segment",
    PART: b"video/iso.segment",
    PLAYLIST: b"application/vnd.apple.mpegurl",
}
PACKAGES = {"nginx": "nginx-light", "wrk": "wrk", "chromium": "chromium"}
CHROMIUM = Path("/usr/bin/chromium")


@dataclass(frozen=True)
class Target:
    """One server under test: its name, the URL of each request kind, the pids doing the work.

    A URL is read just before each run (the live edge moves on); a kind the server has no
    equivalent for is missing from ``urls``.
    """

    name: str
    urls: dict[str, Callable[[], str]]
    pids: list[int]


@dataclass(frozen=True)
class Stage:
    """Stagecast on air: the target, its base URL, each channel's master URL, segment length."""

    target: Target
    base_url: str
    masters: dict[str, str]  # latency ("low", "standard") → master playlist URL
    segment_seconds: float


def tool(name: str) -> str | None:
    """Return the path of program ``name`` (sbin included), or None."""
    return shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")


def _mirror_reachable() -> bool:
    """Return whether a TCP connection opens to the first host of apt's sources (3 s)."""
    # apt reads only these two suffixes (a ``.list.disabled`` file is not a source).
    folder = Path("/etc/apt/sources.list.d")
    sources = [Path("/etc/apt/sources.list"), *folder.glob("*.list"), *folder.glob("*.sources")]
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            found = re.search(r"https?://\S+", line.split("#", 1)[0])
            if found:
                url = urlsplit(found.group(0))
                port = url.port or (443 if url.scheme == "https" else 80)
                try:
                    socket.create_connection((url.hostname or "", port), timeout=3).close()
                except OSError:
                    return False
                return True
    return False


def _apt(*args: str) -> bool:
    """Run apt-get with ``args`` non-interactively (5 min at most); return whether it worked."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        done = subprocess.run(
            ["apt-get", *args], env=env, capture_output=True, check=False, timeout=300
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def install_missing() -> dict[str, str]:
    """Install nginx, wrk and Chromium when missing and allowed; return {tool: why missing}."""
    missing = [name for name in PACKAGES if tool(name) is None]
    if not missing:
        return {}
    if os.geteuid() != 0:
        return dict.fromkeys(missing, "not installed (apt-get needs root)")
    if not _mirror_reachable():
        return dict.fromkeys(missing, "not installed (no network to the Debian mirror)")
    packages = [PACKAGES[name] for name in missing]
    print(f"  installing {' '.join(packages)} with apt-get", flush=True)
    # A fresh machine has no package lists yet: update them when the first try fails.
    if not _apt("install", "-y", "-q", *packages):
        _apt("update", "-q")
        _apt("install", "-y", "-q", *packages)
    return {name: "apt-get could not install it" for name in missing if tool(name) is None}


async def _prepare(data_dir: Path, database_url: str | None = None) -> dict[str, str]:
    """Create the database, a broadcaster and both channels; return {slug: stream key}."""
    settings = Settings(
        _env_file=None, data_dir=data_dir, secret_key="bench", database_url=database_url
    )
    db = open_database(settings)
    try:
        await upgrade(db)
        owner = await accounts.create_account(db, "delivery-owner", "bench-password", "broadcaster")
        _, low = await channels.create_channel(db, owner, SLUG, latency="low")
        _, standard = await channels.create_channel(db, owner, STANDARD_SLUG, latency="standard")
    finally:
        await db.dispose()
    return {SLUG: low, STANDARD_SLUG: standard}


def _on_air(client: httpx.Client, slug: str, deadline: float) -> tuple[str, str]:
    """Wait until ``slug`` lists two segments; return its master and media playlist URLs.

    The media playlist URL is the master's first variant, as a player gets it (``vs`` and all).
    """
    while time.monotonic() < deadline:
        status = client.get(f"/api/v1/channels/{slug}/live", timeout=5.0).json()
        if status.get("master_url"):
            master_url = str(client.base_url.join(status["master_url"]))
            master = client.get(master_url, timeout=5.0)
            variants = [ln for ln in master.text.splitlines() if ln and not ln.startswith("#")]
            if master.status_code == 200 and variants:
                playlist_url = urljoin(master_url, variants[0])
                listing = read_playlist(client.get(playlist_url, timeout=5.0).text)
                # The first segment of a session may be short; the low channel needs parts.
                if len(listing.segments) >= 2 and (slug != SLUG or listing.parts):
                    return master_url, playlist_url
        # Polling with a deadline: the stream's first segments take a few seconds to appear.
        time.sleep(0.5)
    raise TimeoutError(f"{slug}: no two complete segments listed in time")


def _listed(client: httpx.Client, playlist_url: str) -> list[str]:
    text = client.get(playlist_url, timeout=5.0).text
    return [urljoin(playlist_url, ln) for ln in text.splitlines() if ln and ln[0] != "#"]


def _newest(client: httpx.Client, playlist_url: str) -> str:
    """Return the URL of the newest segment the live playlist lists."""
    return _listed(client, playlist_url)[-1]


def _newest_part(client: httpx.Client, playlist_url: str) -> str:
    """Return the URL of the newest part the live playlist lists."""
    parts = read_playlist(client.get(playlist_url, timeout=5.0).text).parts
    return urljoin(playlist_url, parts[-1].uri)


def _out_of_window(client: httpx.Client, playlist_url: str, segment_url: str) -> str:
    """Return ``segment_url`` once the live playlist no longer lists it (else raise)."""
    if segment_url in _listed(client, playlist_url):
        raise RuntimeError(f"{segment_url} is still in the live window")
    return segment_url


def _copy_media(client: httpx.Client, data_dir: Path, playlist_url: str, docroot: Path) -> str:
    """Copy the newest segment, part and the media playlist into ``docroot``; return the
    segment's URL (it is the "old segment" once it has left the live window)."""
    segment_url = _newest(client, playlist_url)
    name = Path(urlsplit(segment_url).path).name
    found = next(data_dir.rglob(name), None)
    if found is None or not (found.parent / PLAYLIST).is_file():
        raise RuntimeError(f"{name} or its {PLAYLIST} is not in {data_dir}")
    shutil.copyfile(found, docroot / SEGMENT)
    shutil.copyfile(found.parent / PLAYLIST, docroot / PLAYLIST)
    if client.get(segment_url, timeout=10.0).content != (docroot / SEGMENT).read_bytes():
        raise RuntimeError("Stagecast serves other bytes than the segment file it stored")
    part = client.get(_newest_part(client, playlist_url), timeout=10.0)
    part.raise_for_status()
    (docroot / PART).write_bytes(part.content)
    return segment_url


def stop(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Terminate ``process`` (kill it after ``timeout`` seconds) and reap it."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextmanager
def stagecast(folder: Path, source: Path, docroot: Path, workers: int = 1) -> Iterator[Stage]:
    """Run ``stagecast serve`` with both channels on air; yield it (see the module).

    With ``workers`` > 1, ``stagecast serve --workers N`` on a scratch PostgreSQL database
    (beside ``STAGECAST_BENCH_DATABASE_URL``) and Redis (``STAGECAST_BENCH_REDIS_URL``).
    """
    data_dir = folder / "data"
    data_dir.mkdir()
    database_url = None
    if workers > 1:
        database_url = asyncio.run(
            scratch_database(PG_ADMIN, f"stagecast_bench_delivery_{os.getpid()}")
        )
    keys = asyncio.run(_prepare(data_dir, database_url))
    port, rtmp_port = free_port(), free_port()
    with ExitStack() as stack:
        if database_url is not None:
            stack.callback(_drop, database_url)
        server = _server(data_dir, port, rtmp_port, workers=workers, database_url=database_url,
                         redis_url=REDIS if workers > 1 else None)  # fmt: skip
        stack.callback(stop, server)
        base_url = f"http://127.0.0.1:{port}"
        client = stack.enter_context(httpx.Client(base_url=base_url))
        _wait_ready(client, port)
        for key in keys.values():
            # Published for longer than any run lasts; stopped when the bench is done.
            publisher = subprocess.Popen(
                [*_looped_copy(source, 7200), "-f", "flv",
                 f"rtmp://127.0.0.1:{rtmp_port}/live/{key}"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            stack.callback(stop, publisher, 10.0)
        deadline = time.monotonic() + 90.0
        master_url, playlist_url = _on_air(client, SLUG, deadline)
        standard_master, _ = _on_air(client, STANDARD_SLUG, deadline)
        segment_url = _copy_media(client, data_dir, playlist_url, docroot)
        segment_seconds = read_playlist(client.get(playlist_url).text).segments[-1].duration
        urls: dict[str, Callable[[], str]] = {
            "segment": lambda: _newest(client, playlist_url),
            "playlist": lambda: playlist_url,
            "part": lambda: _newest_part(client, playlist_url),
            "blocking": lambda: playlist_url,
            "old segment": lambda: _out_of_window(client, playlist_url, segment_url),
        }
        pids = [server.pid, *_children(server.pid)] if workers > 1 else [server.pid]
        name = f"Stagecast x{workers}" if workers > 1 else "Stagecast"
        target = Target(name, urls, pids)
        masters = {"low": master_url, "standard": standard_master}
        yield Stage(target, base_url, masters, segment_seconds)


def _children(pid: int) -> list[int]:
    """Return the worker processes ``stagecast serve --workers`` started."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def _drop(database_url: str) -> None:
    name = database_url.rsplit("/", 1)[1]

    async def drop() -> None:
        conn = await asyncpg.connect(PG_ADMIN.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


def _wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with status {process.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
            return
        except OSError:
            time.sleep(0.05)  # polling with a deadline for the port to open
    raise TimeoutError(f"port {port} not open after {timeout:.0f} s")


def _static_urls(port: int) -> dict[str, Callable[[], str]]:
    """Return the URLs of the copied files (no blocking reload: a static server has none)."""
    base = f"http://127.0.0.1:{port}"
    segment, part, playlist = f"{base}/{SEGMENT}", f"{base}/{PART}", f"{base}/{PLAYLIST}"
    return {
        "segment": lambda: segment,
        "playlist": lambda: playlist,
        "part": lambda: part,
        "old segment": lambda: segment,
    }


_NGINX_CONF = """\
{user}worker_processes 1;
daemon off;
pid {folder}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    # wrk keeps its connections open; do not make nginx reconnect every 1,000 requests.
    keepalive_requests 1000000;
    client_body_temp_path {folder}/body;
    types {{ video/iso.segment m4s; application/vnd.apple.mpegurl m3u8; }}
    server {{
        listen 127.0.0.1:{port};
        root {docroot};
    }}
}}
"""


@contextmanager
def nginx(folder: Path, docroot: Path) -> Iterator[Target]:
    """Run nginx (one worker, sendfile) on ``docroot``; yield it with its worker's pid."""
    program = tool("nginx")
    assert program is not None
    port = free_port()
    # A root master drops its worker to "nobody", who could not read a private temp dir.
    user = "user root root;\n" if os.geteuid() == 0 else ""
    conf = folder / "nginx.conf"
    conf.write_text(_NGINX_CONF.format(user=user, folder=folder, port=port, docroot=docroot))
    command = [program, "-e", "stderr", "-p", str(folder), "-c", str(conf)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        try:
            _wait_port(port, process)
        except RuntimeError as exc:
            error = process.stderr.read().decode().strip() if process.stderr else ""
            raise RuntimeError(f"nginx {exc}: {error}") from exc
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        yield Target("nginx", _static_urls(port), [int(pid) for pid in children] or [process.pid])
    finally:
        stop(process)


@contextmanager
def bare(docroot: Path) -> Iterator[Target]:
    """Run the bare ASGI app on uvicorn in its own process; yield it."""
    port = free_port()
    command = [PYTHON, "-m", "bench.delivery_servers", "bare", str(port), str(docroot)]
    process = subprocess.Popen(command, cwd=ROOT)
    try:
        _wait_port(port, process)
        yield Target("bare ASGI", _static_urls(port), [process.pid])
    finally:
        stop(process)


def bare_app(docroot: Path) -> Callable[..., object]:
    """Return an ASGI app that answers the copied files of ``docroot`` from memory."""
    files = {}
    for name, media_type in _TYPES.items():
        body = (docroot / name).read_bytes()
        headers = [(b"content-type", media_type), (b"content-length", str(len(body)).encode())]
        files[f"/{name}"] = (headers, body)

    async def app(scope: dict[str, object], receive: object, send: Callable[..., object]) -> None:
        headers, body = files.get(str(scope["path"]), ([(b"content-length", b"0")], b""))
        status = 200 if body else 404
        await send({"type": "http.response.start", "status": status, "headers": headers})  # type: ignore[misc]
        await send({"type": "http.response.body", "body": body})  # type: ignore[misc]

    return app


def _serve_bare(port: int, docroot: Path) -> None:
    import uvicorn  # only the baseline's own process needs it

    # The options of ``stagecast serve`` that apply to plain HTTP (uvloop and httptools
    # are picked the same way, by uvicorn's "auto").
    uvicorn.run(
        bare_app(docroot),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        log_config=None,
        lifespan="off",
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["bare"] and len(sys.argv) == 4:
        _serve_bare(int(sys.argv[2]), Path(sys.argv[3]))
    else:
        sys.exit("usage: python -m bench.delivery_servers bare PORT DOCROOT (the baseline)")

"""Viewer delivery: one Stagecast process against nginx and a bare ASGI app, same files.

A real ffmpeg publishes a 720p stream (2.5 Mbit/s video, 128 kbit/s audio, 2 s GOP) over RTMP
into one ``stagecast serve`` on SQLite, as the soak bench does. Once a segment is complete, the
bench copies that segment and the live media playlist out of Stagecast's data directory and
serves the same bytes from Debian's nginx (one worker, ``sendfile on``, a generated config on a
free port) and from a bare ASGI app on uvicorn (the same server stack Stagecast runs on, bytes
held in memory). Then, in one run and while the stream stays live, each server takes the same
load in turn: one ~2 s segment at 50 and at 200 connections, the live media playlist at 200
connections (the URIs a player gets from the master playlist, query included), and a segment
that has left the live window at 50 connections. Stagecast's live-window segment is the newest
its playlist lists when each run starts (served from the session's memory), the old one is the
segment copied at the start (served from storage); nginx and the bare app serve the copy.

Prints req/s, MB/s, p50/p99 latency, the CPU the server used and the CPU the load generator
used (the median round of three, one with ``--quick``), and the ratio to nginx (the median and
range of the ratios within one round: the servers take turns, so a round's ratio compares them
under the same background load); then the targets (segments >= 0.7x nginx, playlists >= 0.3x).
The load generator is ``wrk`` (one thread) when installed, else a small asyncio client of this
module. A missing nginx or wrk is installed with apt-get when the bench runs as root and
reaches the Debian mirror; otherwise that column is skipped with the reason (never a failure).
"""

from __future__ import annotations

import asyncio
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

from bench.chat_servers import PYTHON, ROOT, free_port
from bench.ingest import FFMPEG, _cpu_seconds, _looped_copy, _make_source, _percentile
from bench.soak import _server, _wait_ready
from stagecast.auth import service as accounts
from stagecast.channels import service as channels
from stagecast.config import Settings
from stagecast.db import open_database
from stagecast.db.migrate import upgrade

SLUG = "delivery"
SEGMENT, PLAYLIST = "segment.m4s", "index.m3u8"
# "segment" is the newest the live playlist lists (what a live player fetches next: from the
# session's memory); "old segment" is one that has left the live window (from storage).
CELLS = (("segment", 50), ("segment", 200), ("playlist", 200), ("old segment", 50))
LABELS = {
    "segment": "live-window segment",
    "playlist": "live media playlist",
    "old segment": "segment out of the live window",
}
TARGETS = {"segment": 0.7, "playlist": 0.3, "old segment": 0.7}  # Stagecast / nginx req/s
_PACKAGES = {"nginx": "nginx-light", "wrk": "wrk"}
_TYPES = {SEGMENT: b"video/iso.segment", PLAYLIST: b"application/vnd.apple.mpegurl"}


@dataclass(frozen=True)
class Figures:
    """What one server did under one load: rates, latency (s), CPU (cores busy)."""

    requests_per_s: float
    mb_per_s: float
    p50: float
    p99: float
    errors: int
    server_cpu: float
    generator_cpu: float


@dataclass(frozen=True)
class Target:
    """One server under test: its name, the URL of each request kind, the pids doing the work.

    A URL is read just before each run (the live edge moves on).
    """

    name: str
    urls: dict[str, Callable[[], str]]
    pids: list[int]


def _tool(name: str) -> str | None:
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


def _install_missing() -> dict[str, str]:
    """Install nginx and wrk when missing and allowed; return {tool: why it is missing}."""
    missing = [tool for tool in _PACKAGES if _tool(tool) is None]
    if not missing:
        return {}
    if os.geteuid() != 0:
        return dict.fromkeys(missing, "not installed (apt-get needs root)")
    if not _mirror_reachable():
        return dict.fromkeys(missing, "not installed (no network to the Debian mirror)")
    packages = [_PACKAGES[tool] for tool in missing]
    print(f"  installing {' '.join(packages)} with apt-get", flush=True)
    # A fresh machine has no package lists yet: update them when the first try fails.
    if not _apt("install", "-y", "-q", *packages):
        _apt("update", "-q")
        _apt("install", "-y", "-q", *packages)
    return {tool: "apt-get could not install it" for tool in missing if _tool(tool) is None}


# -- the load generators ---------------------------------------------------------------------

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZES = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def _wrk_seconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)([a-z]+)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def _wrk(url: str, connections: int, seconds: float) -> tuple[float, float, float, float, int]:
    """Run wrk (one thread); return req/s, bytes/s, p50, p99 (s) and failed requests."""
    wrk = _tool("wrk")
    assert wrk is not None
    command = [wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s", "--latency"]
    out = subprocess.run(
        [*command, url], capture_output=True, text=True, check=True, timeout=seconds + 60
    ).stdout
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+), ([\d.]+)(\w+) read", out)
    if total is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    elapsed = _wrk_seconds(total.group(2) + total.group(3))
    size = float(total.group(4)) * _SIZES[total.group(5)]
    percentile = dict(re.findall(r"^\s+(\d+)%\s+(\S+)\s*$", out, re.MULTILINE))
    errors = sum(int(n) for n in re.findall(r"(?:Non-2xx or 3xx responses|timeout) (\d+)", out))
    errors += sum(int(n) for n in re.findall(r"(?:connect|read|write) (\d+)", out))
    return (
        int(total.group(1)) / elapsed,
        size / elapsed,
        _wrk_seconds(percentile["50"]),
        _wrk_seconds(percentile["99"]),
        errors,
    )


async def _fetch_loop(url: str, until: float, latencies: list[float], sizes: list[int]) -> None:
    """Fetch ``url`` over one keep-alive connection until ``until`` (monotonic seconds)."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    request = f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode()
    loop = asyncio.get_running_loop()
    with socket.socket() as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, (parts.hostname, parts.port))
        buffer = bytearray(256 * 1024)
        while time.monotonic() < until:
            started = time.perf_counter()
            await loop.sock_sendall(sock, request)
            head, left, received = bytearray(), -1, 0
            while left != 0:
                count = await loop.sock_recv_into(sock, buffer)
                if count == 0:
                    raise ConnectionError("the server closed the connection")
                received += count
                if left < 0:
                    head += buffer[:count]
                    end = head.find(b"\r\n\r\n")
                    if end < 0:
                        continue
                    length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head[:end])
                    if length is None or not head.startswith(b"HTTP/1.1 200"):
                        raise ConnectionError(f"unexpected response: {bytes(head[:end])!r}")
                    left = int(length.group(1)) - (len(head) - end - 4)
                else:
                    left -= count
            latencies.append(time.perf_counter() - started)
            sizes.append(received)


def _asyncio_load(url: str, connections: int, seconds: float) -> tuple[float, ...]:
    """Run the asyncio client in this process; return what ``_wrk`` returns."""
    latencies: list[float] = []
    sizes: list[int] = []

    async def main() -> list[BaseException | None]:
        until = time.monotonic() + seconds
        jobs = (_fetch_loop(url, until, latencies, sizes) for _ in range(connections))
        return await asyncio.gather(*jobs, return_exceptions=True)

    started = time.monotonic()
    outcomes = _run_loop(main())
    elapsed = time.monotonic() - started
    errors = sum(1 for outcome in outcomes if outcome is not None)
    return (
        len(latencies) / elapsed,
        sum(sizes) / elapsed,
        _percentile(latencies, 0.5),
        _percentile(latencies, 0.99),
        errors,
    )


def _run_loop(
    main: Coroutine[object, object, list[BaseException | None]],
) -> list[BaseException | None]:
    try:
        import uvloop  # ships with uvicorn[standard]
    except ImportError:  # pragma: no cover
        return asyncio.run(main)
    return uvloop.run(main)


def _cpu_now(include_self: bool) -> float:
    """Return CPU seconds used so far by waited-for children (and this process if asked)."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = used.ru_utime + used.ru_stime
    if include_self:
        own = resource.getrusage(resource.RUSAGE_SELF)
        total += own.ru_utime + own.ru_stime
    return total


def _measure(target: Target, kind: str, connections: int, seconds: float) -> Figures:
    """Load ``target`` with requests of ``kind`` and return the figures of that run."""
    generate: Callable[[str, int, float], tuple[float, ...]]
    generate = _wrk if _tool("wrk") else _asyncio_load
    # The asyncio client runs in this process: its cost is this process's CPU.
    own = generate is _asyncio_load
    cpu_before, server_before = _cpu_now(own), _cpu_seconds(target.pids)
    wall_before = time.monotonic()
    rate, throughput, p50, p99, errors = generate(target.urls[kind](), connections, seconds)
    wall = time.monotonic() - wall_before
    return Figures(
        requests_per_s=rate,
        mb_per_s=throughput / 1e6,
        p50=p50,
        p99=p99,
        errors=int(errors),
        server_cpu=(_cpu_seconds(target.pids) - server_before) / wall,
        generator_cpu=(_cpu_now(own) - cpu_before) / wall,
    )


# -- the servers ------------------------------------------------------------------------------


async def _prepare(data_dir: Path) -> str:
    """Create the database, a broadcaster and the public channel ``SLUG``; return its key."""
    settings = Settings(_env_file=None, data_dir=data_dir, secret_key="bench")
    db = open_database(settings)
    try:
        await upgrade(db)
        owner = await accounts.create_account(db, "delivery-owner", "bench-password", "broadcaster")
        _, key = await channels.create_channel(db, owner, SLUG)
    finally:
        await db.dispose()
    return key


def _live_urls(client: httpx.Client, timeout: float = 90.0) -> tuple[str, str, float]:
    """Wait for a complete segment; return the playlist URL, a segment URL and its duration.

    The playlist URL is the master playlist's first variant, as a player gets it; the segment
    is the newest listed once at least two are (the first one of a session may be short).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/api/v1/channels/{SLUG}/live", timeout=5.0).json()
        if status.get("master_url"):
            master_url = str(client.base_url.join(status["master_url"]))
            master = client.get(master_url, timeout=5.0)
            variants = [ln for ln in master.text.splitlines() if ln and not ln.startswith("#")]
            if master.status_code == 200 and variants:
                playlist_url = urljoin(master_url, variants[0])
                text = client.get(playlist_url, timeout=5.0).text
                listed = re.findall(r"#EXTINF:([\d.]+),[^\n]*\n(\S+)", text)
                if len(listed) >= 2:
                    duration, uri = listed[-1]
                    return playlist_url, urljoin(playlist_url, uri), float(duration)
        # Polling with a deadline: the stream's first segments take a few seconds to appear.
        time.sleep(0.5)
    raise TimeoutError(f"no complete segment listed after {timeout:.0f} s")


def _listed(client: httpx.Client, playlist_url: str) -> list[str]:
    text = client.get(playlist_url, timeout=5.0).text
    return [urljoin(playlist_url, ln) for ln in text.splitlines() if ln and ln[0] != "#"]


def _newest(client: httpx.Client, playlist_url: str) -> str:
    """Return the URL of the newest segment the live playlist lists."""
    return _listed(client, playlist_url)[-1]


def _out_of_window(client: httpx.Client, playlist_url: str, segment_url: str) -> str:
    """Return ``segment_url`` once the live playlist no longer lists it (else raise)."""
    if segment_url in _listed(client, playlist_url):
        raise RuntimeError(f"{segment_url} is still in the live window")
    return segment_url


def _copy_media(client: httpx.Client, data_dir: Path, segment_url: str, docroot: Path) -> None:
    """Copy the segment and its media playlist out of the data directory into ``docroot``."""
    name = Path(urlsplit(segment_url).path).name
    found = next(data_dir.rglob(name), None)
    if found is None or not (found.parent / PLAYLIST).is_file():
        raise RuntimeError(f"{name} or its {PLAYLIST} is not in {data_dir}")
    shutil.copyfile(found, docroot / SEGMENT)
    shutil.copyfile(found.parent / PLAYLIST, docroot / PLAYLIST)
    if client.get(segment_url, timeout=10.0).content != (docroot / SEGMENT).read_bytes():
        raise RuntimeError("Stagecast serves other bytes than the segment file it stored")


def _stop(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextmanager
def _stagecast(folder: Path, source: Path, docroot: Path) -> Iterator[tuple[Target, float]]:
    """Run ``stagecast serve`` with ``source`` published live; yield it and the segment length."""
    data_dir = folder / "data"
    data_dir.mkdir()
    key = asyncio.run(_prepare(data_dir))
    port, rtmp_port = free_port(), free_port()
    with ExitStack() as stack:
        server = _server(data_dir, port, rtmp_port)
        stack.callback(_stop, server)
        client = stack.enter_context(httpx.Client(base_url=f"http://127.0.0.1:{port}"))
        _wait_ready(client, port)
        # Published for longer than any run lasts; stopped when the bench is done.
        publisher = subprocess.Popen(
            [*_looped_copy(source, 3600), "-f", "flv", f"rtmp://127.0.0.1:{rtmp_port}/live/{key}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        stack.callback(_stop, publisher, 10.0)
        playlist_url, segment_url, duration = _live_urls(client)
        _copy_media(client, data_dir, segment_url, docroot)
        urls: dict[str, Callable[[], str]] = {
            "segment": lambda: _newest(client, playlist_url),
            "playlist": lambda: playlist_url,
            "old segment": lambda: _out_of_window(client, playlist_url, segment_url),
        }
        yield Target("Stagecast", urls, [server.pid]), duration


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


def _urls(port: int) -> dict[str, Callable[[], str]]:
    segment, playlist = f"http://127.0.0.1:{port}/{SEGMENT}", f"http://127.0.0.1:{port}/{PLAYLIST}"
    return {
        "segment": lambda: segment,
        "playlist": lambda: playlist,
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
def _nginx(folder: Path, docroot: Path) -> Iterator[Target]:
    """Run nginx (one worker, sendfile) on ``docroot``; yield it with its worker's pid."""
    nginx = _tool("nginx")
    assert nginx is not None
    port = free_port()
    # A root master drops its worker to "nobody", who could not read a private temp dir.
    user = "user root root;\n" if os.geteuid() == 0 else ""
    conf = folder / "nginx.conf"
    conf.write_text(_NGINX_CONF.format(user=user, folder=folder, port=port, docroot=docroot))
    command = [nginx, "-e", "stderr", "-p", str(folder), "-c", str(conf)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        try:
            _wait_port(port, process)
        except RuntimeError as exc:
            error = process.stderr.read().decode().strip() if process.stderr else ""
            raise RuntimeError(f"nginx {exc}: {error}") from exc
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        yield Target("nginx", _urls(port), [int(pid) for pid in children] or [process.pid])
    finally:
        _stop(process)


@contextmanager
def _bare(docroot: Path) -> Iterator[Target]:
    """Run the bare ASGI app on uvicorn in its own process; yield it."""
    port = free_port()
    command = [PYTHON, "-m", "bench.delivery", "bare", str(port), str(docroot)]
    process = subprocess.Popen(command, cwd=ROOT)
    try:
        _wait_port(port, process)
        yield Target("bare ASGI", _urls(port), [process.pid])
    finally:
        _stop(process)


def bare_app(docroot: Path) -> Callable[..., object]:
    """Return an ASGI app that answers ``/segment.m4s`` and ``/index.m3u8`` from memory."""
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


# -- the run and the table --------------------------------------------------------------------

Results = dict[tuple[str, int], dict[str, list[Figures]]]


def _run_cells(targets: list[Target], seconds: float, rounds: int) -> Results:
    """Measure every cell on every target, interleaved, ``rounds`` times; keep every round.

    Within a round the servers run one after the other on the same cell, so a ratio of two
    figures of one round compares them under the same background load.
    """
    results: Results = {cell: {target.name: [] for target in targets} for cell in CELLS}
    for round_number in range(rounds):
        for kind, connections in CELLS:
            for target in targets:
                if round_number == 0:
                    _measure(target, kind, connections, 1.0)  # warm-up: caches, accepted sockets
                figures = _measure(target, kind, connections, seconds)
                results[kind, connections][target.name].append(figures)
                print(f"  round {round_number + 1}, {kind} x {connections}, {target.name}: "
                      f"{figures.requests_per_s:,.0f} req/s", flush=True)  # fmt: skip
    return results


def _median(runs: list[Figures]) -> Figures:
    """Return the round with the median req/s (the lower middle one of an even count)."""
    return sorted(runs, key=lambda figures: figures.requests_per_s)[(len(runs) - 1) // 2]


def _ratios(ours: list[Figures], nginx: list[Figures]) -> list[float]:
    """Return the req/s ratios to nginx, round by round, smallest first."""
    pairs = zip(ours, nginx, strict=True)
    return sorted(mine.requests_per_s / peer.requests_per_s for mine, peer in pairs)


def _row(label: str, cells: list[str]) -> str:
    return f"{label:30}" + "".join(f"{cell:>19}" for cell in cells)


def _ms(value: float) -> str:
    return f"{value * 1000:,.0f}" if value >= 0.01 else f"{value * 1000:.2f}"


def _ratio_text(ratios: list[float]) -> str:
    middle = ratios[(len(ratios) - 1) // 2]
    spread = f" ({ratios[0]:.2f}-{ratios[-1]:.2f})" if len(ratios) > 1 else ""
    return f"{middle:.2f}x{spread}"


def _table(results: Results, names: list[str]) -> list[str]:
    lines = [_row("", names)]
    for (kind, connections), by_name in results.items():
        lines.append(f"{LABELS[kind]}, {connections} connections")
        got = [_median(by_name[name]) for name in names]
        rows: list[tuple[str, Callable[[Figures], str]]] = [
            ("  req/s", lambda f: f"{f.requests_per_s:,.0f}"),
            ("  MB/s", lambda f: f"{f.mb_per_s:,.1f}"),
            ("  latency p50 / p99 (ms)", lambda f: f"{_ms(f.p50)} / {_ms(f.p99)}"),
            ("  server CPU (cores)", lambda f: f"{f.server_cpu:.2f}"),
            ("  load generator CPU (cores)", lambda f: f"{f.generator_cpu:.2f}"),
        ]
        if any(f.errors for f in got):
            rows.append(("  failed requests", lambda f: f"{f.errors:,}"))
        for label, shown in rows:
            lines.append(_row(label, [shown(f) for f in got]))
        if "nginx" in by_name:
            ratios = [
                "1.00x"
                if name == "nginx"
                else _ratio_text(_ratios(by_name[name], by_name["nginx"]))
                for name in names
            ]
            lines.append(_row("  req/s vs nginx (range)", ratios))
    return lines


def _targets(results: Results) -> str:
    verdicts = []
    for (kind, connections), by_name in results.items():
        goal = TARGETS[kind]
        if "nginx" not in by_name:
            verdicts.append(f"{kind} x {connections} >= {goal}x nginx: not measured")
            continue
        ratios = _ratios(by_name["Stagecast"], by_name["nginx"])
        ratio = ratios[(len(ratios) - 1) // 2]
        verdict = "met" if ratio >= goal else "MISSED"
        verdicts.append(f"{kind} x {connections} >= {goal}x nginx (got {ratio:.2f}x): {verdict}")
    return "targets (median round): " + "; ".join(verdicts)


def _generator_line(generator: str, seconds: float, rounds: int) -> str:
    if generator == "wrk":
        version = subprocess.run([_tool("wrk") or "wrk", "-v"], capture_output=True, text=True)
        name = (version.stdout + version.stderr).split(" [", 1)[0].strip() or "wrk"
        what = f"{name}, one thread"
    else:
        what = "this bench's asyncio client (wrk is missing), in the bench's own process"
    round_text = f"median of {rounds} rounds" if rounds > 1 else "one round"
    return (
        f"load: {what}, {seconds:g} s per cell after a 1 s warm-up, {round_text}; "
        "its CPU is in the table (1.00 = a whole core: near it, the generator is the limit)"
    )


def run(quick: bool) -> None:
    """Run the delivery benchmark (a few seconds per cell with ``quick``) and print it."""
    seconds, rounds = (3.0, 1) if quick else (8.0, 3)
    busy = os.getloadavg()[0]
    missing = _install_missing()
    generator = "asyncio" if "wrk" in missing else "wrk"
    skipped = {tool: reason for tool, reason in missing.items() if tool == "nginx"}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        folder = Path(tmp)
        docroot, nginx_dir = folder / "www", folder / "nginx"
        docroot.mkdir()
        nginx_dir.mkdir()
        source = _make_source(folder, 20)
        print(f"  publishing with {FFMPEG}; waiting for a complete segment", flush=True)
        stagecast, duration = stack.enter_context(_stagecast(folder, source, docroot))
        targets = [stagecast]
        if "nginx" not in skipped:
            try:
                targets.append(stack.enter_context(_nginx(nginx_dir, docroot)))
            except (RuntimeError, TimeoutError, OSError) as exc:
                skipped["nginx"] = f"did not start ({exc})"
        targets.append(stack.enter_context(_bare(docroot)))
        results = _run_cells(targets, seconds, rounds)
        segment_size = (docroot / SEGMENT).stat().st_size
        playlist_size = (docroot / PLAYLIST).stat().st_size
    print(f"source: 1280x720 30 fps, 2 s GOP, published live over RTMP; segment "
          f"{segment_size / 1000:,.0f} KB ({duration:.2f} s, "
          f"{segment_size * 8 / duration / 1e6:.2f} Mbit/s), media playlist "
          f"{playlist_size:,} B; {os.cpu_count()} cores, load average {busy:.2f} "
          "before the run")  # fmt: skip
    print(_generator_line(generator, seconds, rounds))
    for tool, reason in missing.items():
        if tool == "wrk":
            print(f"wrk: {reason}; measured with the asyncio client instead")
    for tool, reason in skipped.items():
        print(f"{tool} column skipped: {reason}")
    print("\n".join(_table(results, [target.name for target in targets])))
    print(_targets(results))
    print(
        'later work, not measured here: parts and blocking reloads (LL-HLS), the "viewers '
        'held" simulation of hls.js-like players, and the Chromium + hls.js glass-to-glass '
        "latency"
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["bare"] and len(sys.argv) == 4:
        _serve_bare(int(sys.argv[2]), Path(sys.argv[3]))
    else:
        sys.exit("usage: python -m bench.delivery bare PORT DOCROOT (the baseline server)")

"""The servers the chat benchmark measures, run as subprocesses on 127.0.0.1: the bare
``websockets`` broadcast baseline and ``stagecast serve`` (one or several, SQLite or PostgreSQL
with Redis), plus a sampler of a process's memory and CPU.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench.chat_setup import BenchChannel

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
STAGECAST = str(Path(PYTHON).parent / "stagecast")


def free_port() -> int:
    """Return a port nothing listens on (127.0.0.1)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RssSampler:
    """Sample a process's resident memory once a second (MiB) in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, float]] = []
        self.cpu_start = self.cpu_end = self.elapsed = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _cpu(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _run(self) -> None:
        started = time.monotonic()
        try:
            self.cpu_start = self._cpu()
        except OSError:
            return
        while not self._stop.wait(1.0):
            try:
                status = Path(f"/proc/{self.pid}/status").read_text()
                self.cpu_end = self._cpu()
            except OSError:
                return
            self.elapsed = time.monotonic() - started
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    self.samples.append((self.elapsed, int(line.split()[1]) / 1024))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=3)

    def cpu_share(self) -> float:
        """Return the CPU the process used per second of wall time (1.0 = one core)."""
        return (self.cpu_end - self.cpu_start) / self.elapsed if self.elapsed else 0.0

    def summary(self) -> str:
        """Return start, peak and end RSS, and the drift over the second half of the run."""
        if not self.samples:
            return "no samples"
        values = [v for _, v in self.samples]
        half = values[len(values) // 2 :]
        drift = half[-1] - half[0] if len(half) > 1 else 0.0
        cpu = (self.cpu_end - self.cpu_start) / self.elapsed if self.elapsed else 0.0
        return (
            f"RSS start {values[0]:.0f} MiB, peak {max(values):.0f} MiB, "
            f"end {values[-1]:.0f} MiB, second-half drift {drift:+.1f} MiB; CPU {cpu:.0%}"
        )


def readline(proc: subprocess.Popen[str], timeout: float) -> str:
    """Read one line of ``proc``'s stdout, failing after ``timeout`` seconds."""
    box: list[str] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    if not box:
        proc.kill()
        raise TimeoutError("load generator did not answer in time")
    return box[0]


@contextmanager
def baseline_server() -> Iterator[tuple[str, int]]:
    """Run the bare broadcast server; yield its URL and pid."""
    port = free_port()
    proc = subprocess.Popen(
        [PYTHON, "-m", "bench.chat_baseline", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        if readline(proc, timeout=20).strip() != "listening":
            raise RuntimeError("baseline server did not start")
        yield f"ws://127.0.0.1:{port}/", proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def stagecast_servers(
    channel: BenchChannel, count: int = 1, redis_url: str | None = None
) -> Iterator[list[tuple[str, int]]]:
    """Run ``count`` ``stagecast serve`` processes on ``channel``'s database; yield
    (socket URL, pid) for each once /readyz answers."""
    procs, urls = [], []
    for _ in range(count):
        port = free_port()
        env = {
            **os.environ,
            "STAGECAST_DATABASE_URL": channel.database_url,
            "STAGECAST_DATA_DIR": str(channel.data_dir),
            "STAGECAST_PORT": str(port),
            "STAGECAST_HOST": "127.0.0.1",
            "STAGECAST_RTMP_PORT": "0",
            "STAGECAST_RTMP_HOST": "127.0.0.1",
            "STAGECAST_SECRET_KEY": "bench-secret-key",
            "STAGECAST_ADMIN_PASSWORD": "bench-admin-password",
            "STAGECAST_LOG_LEVEL": "warning",
            "STAGECAST_CHAT_RATE_LIMIT": "1000000",
            "STAGECAST_CHAT_SEND_QUEUE": "1024",
        }
        if redis_url:
            env["STAGECAST_REDIS_URL"] = redis_url
            env["STAGECAST_REDIS_PREFIX"] = f"bench{os.getpid()}"
        procs.append(
            subprocess.Popen(
                [STAGECAST, "serve"], cwd=channel.data_dir, env=env, stdout=subprocess.DEVNULL
            )
        )
        urls.append((port, procs[-1].pid))
    try:
        for port, _ in urls:
            _wait_ready(f"http://127.0.0.1:{port}/readyz")
        slug = channel.slug
        yield [(f"ws://127.0.0.1:{p}/api/v1/channels/{slug}/chat/socket", pid) for p, pid in urls]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def _wait_ready(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout} s")

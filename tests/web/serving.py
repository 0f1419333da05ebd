"""``stagecast serve`` as a subprocess: the real command line, its stderr kept in a file."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    """Return a TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Served:
    """A running ``stagecast serve``: where it listens and what it wrote on stderr."""

    host: str
    port: int
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        """Return the base URL."""
        return f"http://{self.host}:{self.port}"

    def log_text(self) -> str:
        """Return everything the server logged so far."""
        return self.log.read_text(errors="replace")

    def wait_for_log(self, needle: str, timeout: float = 10.0) -> str:
        """Wait until ``needle`` appears in the log; return the whole log."""
        deadline = time.monotonic() + timeout
        while needle not in (text := self.log_text()):
            assert time.monotonic() < deadline, f"{needle!r} not logged:\n{text[-2000:]}"
            time.sleep(0.05)
        return text


@contextlib.contextmanager
def stagecast_serve(data_dir: Path, **env: str) -> Iterator[Served]:
    """Run ``stagecast serve`` on SQLite in ``data_dir`` until the block ends."""
    port = free_port()
    log = data_dir.parent / "serve.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("STAGECAST_")} | {
        "STAGECAST_DATA_DIR": str(data_dir),
        "STAGECAST_PORT": str(port),
        "STAGECAST_HOST": "127.0.0.1",
        "STAGECAST_RTMP_HOST": "127.0.0.1",
        "STAGECAST_RTMP_PORT": "0",
        "STAGECAST_ADMIN_PASSWORD": "admin-password",
        "STAGECAST_REGISTRATION": "open",
        **env,
    }
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "stagecast", "serve"],
            env=environment,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    served = Served("127.0.0.1", port, log, process)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"serve exited:\n{served.log_text()}"
            assert time.monotonic() < deadline, f"serve did not start:\n{served.log_text()}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{served.url}/healthz", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        yield served
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

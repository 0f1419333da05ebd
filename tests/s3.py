"""A real S3-API server for the tests: moto's standalone server on 127.0.0.1.

moto is an emulator of the S3 API (it keeps objects in memory), not AWS: the code under test
talks plain S3 to it over HTTP (conditional puts, list, delete, presigned GETs), so MinIO,
Garage or AWS take the same requests. ``pause`` stops the server's process (SIGSTOP) without
losing what it holds: requests to it hang until ``resume``, as with a bucket that stopped
answering.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import obstore
from obstore.store import S3Store

ACCESS_KEY, SECRET_KEY, REGION = "test-key", "test-secret", "us-east-1"


@dataclass
class S3Server:
    """One moto server process."""

    process: subprocess.Popen[bytes]
    url: str

    def bucket(self) -> str:
        """Create a new empty bucket; return its name."""
        name = f"b-{uuid.uuid4().hex[:12]}"
        httpx.put(f"{self.url}/{name}", timeout=10).raise_for_status()
        return name

    def settings(self, bucket: str, prefix: str = "media") -> dict[str, Any]:
        """Return the Settings fields that put a node's media in ``bucket``."""
        return {
            "storage_url": f"s3://{bucket}/{prefix}",
            "s3_endpoint_url": self.url,
            "s3_region": REGION,
            "s3_access_key_id": ACCESS_KEY,
            "s3_secret_access_key": SECRET_KEY,
            "s3_path_style": True,
            "storage_timeout": 1.0,
        }

    def store(self, bucket: str) -> S3Store:
        """Return a client of ``bucket`` (signed requests, as any S3 client sends)."""
        return S3Store(
            bucket,
            endpoint=self.url,
            region=REGION,
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
            virtual_hosted_style_request=False,
            client_options={"allow_http": True},
        )

    def keys(self, bucket: str, prefix: str = "") -> dict[str, int]:
        """Return every object key (and size) under ``prefix`` of ``bucket``."""
        found: dict[str, int] = {}
        for batch in obstore.list(self.store(bucket), prefix or None):
            for meta in batch:
                found[meta["path"]] = meta["size"]
        return found

    def get(self, bucket: str, key: str) -> bytes | None:
        """Return the object's bytes, or None if there is none."""
        try:
            return bytes(obstore.get(self.store(bucket), key).bytes())
        except FileNotFoundError:
            return None

    def pause(self) -> None:
        """Stop answering (the process is stopped; connections hang)."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Answer again, with everything it held."""
        self.process.send_signal(signal.SIGCONT)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def s3_server() -> Iterator[S3Server]:
    """Run a moto S3 server on a free port for the duration of the block."""
    port = _free_port()
    env = {**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"}
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    server = S3Server(process, f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(server.url, timeout=1)
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the moto S3 server did not start") from None
                time.sleep(0.05)
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGCONT)
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

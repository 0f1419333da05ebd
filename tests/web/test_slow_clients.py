"""``stagecast serve`` drops clients that never finish their request headers or sit idle."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.web.serving import Served, stagecast_serve

HEADER_TIMEOUT = 1.0
KEEPALIVE_TIMEOUT = 1


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The real command with 1 s header and keep-alive timeouts."""
    data = Path(tmp_path_factory.mktemp("slow")) / "data"
    with stagecast_serve(
        data,
        STAGECAST_HTTP_HEADER_TIMEOUT=str(HEADER_TIMEOUT),
        STAGECAST_HTTP_KEEPALIVE_TIMEOUT=str(KEEPALIVE_TIMEOUT),
    ) as running:
        yield running


def _connect(served: Served) -> socket.socket:
    conn = socket.create_connection((served.host, served.port), timeout=10)
    conn.settimeout(10)  # far past the server's timeouts: a hang fails the read
    return conn


def _closed_after(conn: socket.socket) -> tuple[bytes, float]:
    """Read until the server closes; return what it sent and how long that took (s)."""
    started = time.monotonic()
    received = b""
    try:
        while chunk := conn.recv(4096):
            received += chunk
    except TimeoutError:
        pytest.fail("the server kept the connection open for 10 s")
    except ConnectionResetError:
        pass
    return received, time.monotonic() - started


def test_half_a_request_line_is_dropped_after_the_header_timeout(served: Served) -> None:
    """A connection that sends "GET /heal" and nothing more is closed, without a response."""
    with _connect(served) as conn:
        conn.sendall(b"GET /heal")
        received, took = _closed_after(conn)
    assert received == b""
    assert took < HEADER_TIMEOUT + 3


def test_headers_sent_a_byte_at_a_time_still_get_only_the_header_timeout(
    served: Served,
) -> None:
    """Trickling header bytes does not extend the deadline: it runs from the first byte."""
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 64
    with _connect(served) as conn:
        started = time.monotonic()
        conn.settimeout(0.2)
        for byte in request:
            try:
                conn.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            try:
                if conn.recv(4096) == b"":
                    break  # closed by the server
            except TimeoutError:
                continue  # the pause between two bytes of a slow client
        took = time.monotonic() - started
    assert took < HEADER_TIMEOUT + 3, "the trickle kept the connection open"


def test_an_idle_keep_alive_connection_is_closed(served: Served) -> None:
    """After a response, a connection with no next request is closed after the keep-alive."""
    with _connect(served) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        received, took = _closed_after(conn)
    assert received.startswith(b"HTTP/1.1 200")
    assert took < KEEPALIVE_TIMEOUT + 3


def test_a_whole_request_sent_promptly_is_answered(served: Served) -> None:
    """The timeouts do not touch a client that sends its headers at once."""
    with _connect(served) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        received, _ = _closed_after(conn)
    assert received.startswith(b"HTTP/1.1 200")

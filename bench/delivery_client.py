"""What the delivery bench's own clients share: a raw HTTP/1.1 connection and a playlist reader.

``Connection`` is one keep-alive connection from a loopback address of its own (the whole of
127.0.0.0/8 reaches the server on Linux), so each simulated viewer is its own client, as real
viewers are: the server bounds held requests per client address. It reads a body into memory
only when asked (playlists); media bodies are counted and dropped into a shared scratch buffer.

``read_playlist`` reads a live media playlist as a player does: its segments and parts, each
with the wall-clock time its media ends (``EXT-X-PROGRAM-DATE-TIME`` is the wall clock at
ingest), and the hold-backs and targets of its server control.
"""

from __future__ import annotations

import asyncio
import re
import socket
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

_LENGTH = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")
_SCRATCH = bytearray(1024 * 1024)  # media bodies land here and are dropped (never read)
_ATTRIBUTE = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')
_PART_NUMBER = re.compile(r"part-(\d+)\.m4s")


def source_address(index: int) -> str:
    """Return the loopback address of client ``index`` (127.1.0.1 onwards; 62,500 of them)."""
    return f"127.{1 + index // 62_500}.{index // 250 % 250}.{index % 250 + 1}"


class HttpError(Exception):
    """A response that is not the one asked for: ``status`` is its HTTP status (0: none)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Stale(HttpError):
    """The server closed a kept-alive connection before answering (its idle timeout)."""


class Connection:
    """One keep-alive HTTP/1.1 connection to ``host:port`` from ``source`` (reconnects lazily)."""

    def __init__(self, host: str, port: int, source: str = "127.0.0.1") -> None:
        self.host, self.port, self.source = host, port, source
        self.requests = 0
        self.received = 0  # bytes, heads included
        self.reopened = 0  # kept-alive sockets found closed by the server and opened again
        self._sock: socket.socket | None = None
        self._answered = 0  # requests answered on the current socket
        self._buffer = bytearray(16 * 1024)

    async def _connect(self) -> socket.socket:
        sock = socket.socket()
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((self.source, 0))
        try:
            await asyncio.get_running_loop().sock_connect(sock, (self.host, self.port))
        except OSError:
            sock.close()
            raise
        return sock

    def close(self) -> None:
        """Close the socket (the next request opens a new one)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self._answered = 0

    async def get(self, target: str, *, keep: bool) -> tuple[int, bytes]:
        """GET ``target`` (path and query); return the status and the body (b"" unless ``keep``).

        A kept-alive connection the server closed while idle is opened again and the request
        sent once more, as browsers do. Raises HttpError when the connection closes
        mid-response or the response has no Content-Length, OSError when it cannot connect.
        The connection is closed on error.
        """
        for _ in range(2):
            reused = self._sock is not None and self._answered > 0
            if self._sock is None:
                self._sock = await self._connect()
            try:
                answer = await self._exchange(self._sock, target, keep)
            except _Stale:
                self.close()
                if not reused:
                    raise
                self.reopened += 1
                continue
            except BaseException:
                self.close()
                raise
            self._answered += 1
            return answer
        raise _Stale(0, "the server closed the connection again")

    async def _exchange(self, sock: socket.socket, target: str, keep: bool) -> tuple[int, bytes]:
        loop = asyncio.get_running_loop()
        request = f"GET {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n"
        try:
            await loop.sock_sendall(sock, request.encode())
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise _Stale(0, "the server closed the connection") from exc
        head = bytearray()
        while (end := head.find(b"\r\n\r\n")) < 0:
            try:
                count = await loop.sock_recv_into(sock, self._buffer)
            except ConnectionResetError as exc:
                raise _Stale(0, "the server reset the connection") from exc
            if count == 0:
                raise (_Stale if not head else HttpError)(0, "the server closed the connection")
            head += self._buffer[:count]
        length = _LENGTH.search(head, 0, end)
        status = int(head[9:12]) if head.startswith(b"HTTP/1.1 ") else 0
        if length is None:
            if status == 304:
                length_value = 0
            else:
                raise HttpError(status, f"no Content-Length: {bytes(head[:end])!r}")
        else:
            length_value = int(length.group(1))
        body = head[end + 4 :]
        left = length_value - len(body)
        self.received += end + 4 + len(body)
        while left > 0:
            into = self._buffer if keep else _SCRATCH
            count = await loop.sock_recv_into(sock, memoryview(into)[: min(left, len(into))])
            if count == 0:
                raise HttpError(status, "the server closed the connection mid-body")
            if keep:
                body += into[:count]
            left -= count
            self.received += count
        self.requests += 1
        return status, bytes(body) if keep else b""


def target_of(url: str) -> str:
    """Return the path and query of ``url`` (what goes on the request line)."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


@dataclass(frozen=True, slots=True)
class Media:
    """A listed segment or part: its URI, segment number, part index (None: whole segment),
    duration (s) and the wall-clock time its media ends (Unix seconds)."""

    uri: str
    msn: int
    part: int | None
    duration: float
    end: float

    @property
    def number(self) -> int:
        """Return a part's number (from its file name; -1 for a segment)."""
        found = _PART_NUMBER.search(self.uri)
        return int(found.group(1)) if found else -1


@dataclass(frozen=True, slots=True)
class Playlist:
    """A media playlist as a player reads it (durations and hold-backs in seconds)."""

    segments: tuple[Media, ...]
    parts: tuple[Media, ...]
    target_duration: float
    part_hold_back: float | None
    map_uri: str | None
    ended: bool


def _attributes(text: str) -> dict[str, str]:
    return {key: value.strip('"') for key, value in _ATTRIBUTE.findall(text)}


def read_playlist(text: str) -> Playlist:
    """Read a live media playlist (full or delta). Raises ValueError for one without dates."""
    segments: list[Media] = []
    parts: list[Media] = []
    target, hold_back, map_uri, ended = 0.0, None, None, False
    msn, start, offset, index = 0, None, 0.0, 0
    duration: float | None = None
    for line in text.splitlines():
        tag, _, value = line.partition(":")
        if tag == "#EXT-X-MEDIA-SEQUENCE":
            msn = int(value)
        elif tag == "#EXT-X-SKIP":
            msn += int(_attributes(value)["SKIPPED-SEGMENTS"])
        elif tag == "#EXT-X-TARGETDURATION":
            target = float(value)
        elif tag == "#EXT-X-SERVER-CONTROL":
            found = _attributes(value).get("PART-HOLD-BACK")
            hold_back = float(found) if found else None
        elif tag == "#EXT-X-MAP":
            map_uri = _attributes(value)["URI"]
        elif tag == "#EXT-X-PROGRAM-DATE-TIME":
            start = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            offset = 0.0
        elif tag == "#EXT-X-PART":
            fields = _attributes(value)
            if start is None:
                raise ValueError("a part before any EXT-X-PROGRAM-DATE-TIME")
            offset += float(fields["DURATION"])
            parts.append(
                Media(fields["URI"], msn, index, float(fields["DURATION"]), start + offset)
            )
            index += 1
        elif tag == "#EXTINF":
            duration = float(value.split(",", 1)[0])
        elif tag == "#EXT-X-ENDLIST":
            ended = True
        elif line and not line.startswith("#") and duration is not None:
            if start is None:
                raise ValueError("a segment without EXT-X-PROGRAM-DATE-TIME")
            segments.append(Media(line, msn, None, duration, start + duration))
            msn, start, offset, index, duration = msn + 1, start + duration, 0.0, 0, None
    return Playlist(tuple(segments), tuple(parts), target, hold_back, map_uri, ended)

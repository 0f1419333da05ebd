"""Chat load generator: N receiving sockets and a few senders, in a process of its own.

Run by ``bench/chat.py``: ``python -m bench.chat_load '<json config>'``. Prints one JSON line
with the latency histogram and delivery counts when done.

The receivers use a minimal WebSocket client written on ``asyncio.Protocol`` (handshake,
unmasked server frames, pong replies) because a full client library costs more CPU per frame
than the servers being measured; every byte stays on 127.0.0.1. Each sent message carries its
send time (``time.monotonic_ns``, one clock for every process on the machine) at the start of
its body, so a receiver's latency is ``now - sent``.

Modes: ``stagecast`` (senders post ``{"type": "post", ...}`` with a bearer token; receivers
check every message arrives exactly once and in id order) and ``baseline`` (senders send the
raw text that the bare broadcast server relays).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

BUCKET_NS = 100_000  # histogram resolution: 0.1 ms
MAX_BUCKET = 100_000  # 10 s; slower deliveries land in the last bucket


@dataclass
class Tally:
    """What every receiver of this process saw."""

    histogram: list[int] = field(default_factory=lambda: [0] * (MAX_BUCKET + 1))
    received: int = 0  # measured deliveries
    frames: int = 0  # every frame
    duplicates: int = 0
    out_of_order: int = 0
    window: tuple[int, int] = (0, 0)  # measured send times, monotonic ns
    worst: dict[int, int] = field(default_factory=dict)  # second of the window -> worst bucket

    def record(self, sent_ns: int, now_ns: int) -> None:
        if self.window[0] <= sent_ns < self.window[1]:
            bucket = (now_ns - sent_ns) // BUCKET_NS
            self.histogram[min(max(bucket, 0), MAX_BUCKET)] += 1
            self.received += 1
            second = (sent_ns - self.window[0]) // 1_000_000_000
            if bucket > self.worst.get(second, 0):
                self.worst[second] = bucket


def _mask(payload: bytes) -> bytes:
    key = os.urandom(4)
    length = len(payload)
    repeated = (key * (length // 4 + 1))[:length]
    masked = int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")
    return key + masked.to_bytes(length, "big")


def client_frame(opcode: int, payload: bytes) -> bytes:
    """Return a masked client frame (RFC 6455 section 5.3)."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    return header + _mask(payload)


class Socket(asyncio.Protocol):
    """A minimal WebSocket client: handshake, read text frames, answer pings."""

    def __init__(self, request: bytes, on_text: Any) -> None:
        self._request = request
        self._on_text = on_text
        self._buffer = b""
        self._open = False
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.greeted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data
        if not self._open:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self._buffer = buffer
                return
            status = buffer[:end].split(b"\r\n", 1)[0]
            if b" 101 " not in status:
                self.ready.set_exception(ConnectionError(status.decode(errors="replace")))
                return
            self._open = True
            self.ready.set_result(None)
            buffer = buffer[end + 4 :]
        self._buffer = self._frames(buffer)

    def _frames(self, buffer: bytes) -> bytes:
        offset, size = 0, len(buffer)
        while size - offset >= 2:
            opcode = buffer[offset] & 0x0F
            length = buffer[offset + 1] & 0x7F
            start = offset + 2
            if length == 126:
                if size - offset < 4:
                    break
                length = int.from_bytes(buffer[offset + 2 : offset + 4], "big")
                start = offset + 4
            elif length == 127:
                if size - offset < 10:
                    break
                length = int.from_bytes(buffer[offset + 2 : offset + 10], "big")
                start = offset + 10
            if size - start < length:
                break
            payload = buffer[start : start + length]
            offset = start + length
            if opcode == 1:
                if not self.greeted.done():
                    self.greeted.set_result(None)
                self._on_text(payload)
            elif opcode == 9 and self.transport is not None:
                self.transport.write(client_frame(10, payload))
            elif opcode == 8:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                if not self.closed.done():
                    self.closed.set_result(code)
        return buffer[offset:]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("connection lost during handshake"))
        if not self.closed.done():
            self.closed.set_result(1006)

    def send_text(self, text: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(1, text.encode()))


async def open_socket(url: str, on_text: Any, token: str | None = None) -> Socket:
    """Connect to ``url`` and complete the handshake (10 s at most)."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    loop = asyncio.get_running_loop()
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    _, protocol = await loop.create_connection(lambda: Socket(request, on_text), host, port)
    async with asyncio.timeout(10):
        await protocol.ready
    return protocol


def receiver(tally: Tally, mode: str) -> Any:
    """Return a frame handler that records latency and checks order (stagecast mode)."""
    last = [0]

    def on_text(payload: bytes) -> None:
        now = time.monotonic_ns()
        tally.frames += 1
        if mode == "baseline":
            sent = payload[: payload.find(b" ")]
            if sent.isdigit():
                tally.record(int(sent), now)
            return
        start = payload.find(b'"body":"')
        if start < 0:
            return  # hello, ping, ...
        sent = payload[start + 8 : payload.find(b" ", start + 8)]
        id_at = payload.find(b'"id":') + 5
        message_id = int(payload[id_at : payload.find(b",", id_at)])
        if message_id == last[0]:
            tally.duplicates += 1
        elif message_id < last[0]:
            tally.out_of_order += 1
        last[0] = max(last[0], message_id)
        if sent.isdigit():
            tally.record(int(sent), now)

    return on_text


async def send_loop(
    socket: Socket, mode: str, interval: float, window: tuple[int, int], label: str, offset: float
) -> int:
    """Send one message every ``interval`` seconds, starting ``offset`` seconds late, until the
    window ends; return how many were sent inside the measured window."""
    await asyncio.sleep(offset)
    next_ns = time.monotonic_ns()
    counted = sent = 0
    filler = "x" * 60
    while next_ns < window[1]:
        now = time.monotonic_ns()
        body = f"{now} {label}-{sent} {filler}"
        socket.send_text(
            json.dumps({"type": "post", "body": body}) if mode == "stagecast" else body
        )
        sent += 1
        counted += window[0] <= now < window[1]
        next_ns += int(interval * 1e9)
        await asyncio.sleep(max(next_ns - time.monotonic_ns(), 0) / 1e9)
    return counted


async def connect_all(
    urls: list[str], count: int, tally: Tally, mode: str
) -> tuple[list[Socket], dict[str, float]]:
    """Open ``count`` receivers spread over ``urls``, 100 handshakes at a time; return them
    and the join figures: p50/p99/max of one join (TCP connect to ``hello``, ms; the
    handshake for the baseline) and the wall time until every receiver had joined (s)."""
    sockets: list[Socket] = []
    joins: list[float] = []
    gate = asyncio.Semaphore(100)

    async def one(i: int) -> None:
        async with gate:
            started = time.perf_counter()
            sock = await open_socket(urls[i % len(urls)], receiver(tally, mode))
            if mode == "stagecast":  # authorised and registered once "hello" arrives
                async with asyncio.timeout(30):
                    await sock.greeted
            joins.append((time.perf_counter() - started) * 1000)
            sockets.append(sock)

    began = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    wall = time.perf_counter() - began
    joins.sort()
    figures = {
        "p50": joins[len(joins) // 2] if joins else 0.0,
        "p99": joins[min(len(joins) - 1, int(len(joins) * 0.99))] if joins else 0.0,
        "max": joins[-1] if joins else 0.0,
        "wall": wall,
    }
    return sockets, figures


async def main(config: dict[str, Any]) -> dict[str, Any]:
    """Connect, say "ready", wait for "go <t0>", send until the window ends, drain, report."""
    mode = config["mode"]
    tally = Tally()
    receivers, joins = await connect_all(config["urls"], config["clients"], tally, mode)
    senders = []
    ignore = Tally()
    for i, token in enumerate(config["tokens"]):
        url = config["sender_urls"][i % len(config["sender_urls"])]
        senders.append(await open_socket(url, receiver(ignore, mode), token))
    print("ready", flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    t0 = int(line.split()[1])
    warmup, duration = config["warmup"], config["duration"]
    tally.window = (t0 + int(warmup * 1e9), t0 + int((warmup + duration) * 1e9))
    await asyncio.sleep(max(t0 - time.monotonic_ns(), 0) / 1e9)
    interval = len(senders) / config["rate"] if senders else 1.0
    # Senders are spread evenly over the interval: together they send at a steady rate.
    counts = await asyncio.gather(
        *(
            send_loop(s, mode, interval, tally.window, f"s{i}", i * interval / len(senders))
            for i, s in enumerate(senders)
        )
    )
    await asyncio.sleep(config.get("drain", 2.0))
    closed = sum(1 for s in receivers if s.closed.done())
    for s in receivers + senders:
        if s.transport is not None:
            s.transport.close()
    return {
        "histogram": {i: n for i, n in enumerate(tally.histogram) if n},
        "received": tally.received,
        "sent_in_window": sum(counts),
        "receivers": len(receivers),
        "frames": tally.frames,
        "duplicates": tally.duplicates,
        "out_of_order": tally.out_of_order,
        "closed": closed,
        "joins": joins,
        "worst_ms": [round(tally.worst.get(i, 0) * BUCKET_NS / 1e6) for i in range(int(duration))],
    }


if __name__ == "__main__":
    try:
        from uvloop import run as run_loop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        from asyncio import run as run_loop
    print(json.dumps(run_loop(main(json.loads(sys.argv[1])))), flush=True)

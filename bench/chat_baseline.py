"""The baseline: a bare ``websockets`` broadcast server (no auth, no database, no JSON work).

``python -m bench.chat_baseline PORT`` relays every text frame it receives to every connected
socket with ``websockets.broadcast`` (synchronous writes, no per-socket queue). It binds
127.0.0.1 only and prints "listening" once ready.
"""

from __future__ import annotations

import asyncio
import sys

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed


async def main(port: int) -> None:
    """Serve until killed."""
    clients: set[ServerConnection] = set()

    async def relay(socket: ServerConnection) -> None:
        clients.add(socket)
        try:
            async for message in socket:
                broadcast(clients, message)
        except ConnectionClosed:
            pass  # the load generator drops its sockets without a closing handshake
        finally:
            clients.discard(socket)

    async with serve(relay, "127.0.0.1", port, max_size=65536, compression=None):
        print("listening", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    try:
        from uvloop import run as run_loop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        from asyncio import run as run_loop
    run_loop(main(int(sys.argv[1])))

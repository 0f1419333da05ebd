"""A real DNS server stand-in on UDP 127.0.0.1, and a resolver that asks it.

``ScriptedDns`` answers the n-th query for a name with the n-th address of its script (the
last one again after that): a name can resolve to a public address first and to loopback
next, as a rebinding attacker's name server does. ``resolving_through(dns)`` makes the event
loop's ``getaddrinfo`` — the resolver Stagecast and httpx both use — ask that server for names
under ``.rebind.test`` (everything else resolves as usual). Pointing the process's system
resolver at a private server cannot be done here without root-wide changes, so that one call
is what the tests replace; the DNS exchange itself is real UDP.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any, cast

ZONE = ".rebind.test"


def _name(packet: bytes, offset: int) -> tuple[str, int]:
    labels = []
    while length := packet[offset]:
        labels.append(packet[offset + 1 : offset + 1 + length].decode())
        offset += 1 + length
    return ".".join(labels), offset + 1


def _question(name: str, ident: int) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + labels + b"\0" + b"\0\1\0\1"


class ScriptedDns(asyncio.DatagramProtocol):
    """Answer each name's queries from its script of addresses, counting them."""

    def __init__(self, script: dict[str, list[str]]) -> None:
        self.script = script
        self.queries: dict[str, int] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self.address: tuple[str, int] = ("127.0.0.1", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.address = transport.get_extra_info("sockname")

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        ident = struct.unpack("!H", data[:2])[0]
        name, end = _name(data, 12)
        question = data[12 : end + 4]
        seen = self.queries.get(name, 0)
        self.queries[name] = seen + 1
        answers = self.script.get(name, [])
        reply = b""
        if answers:
            ip = ipaddress.ip_address(answers[min(seen, len(answers) - 1)])
            kind = 1 if ip.version == 4 else 28
            reply = struct.pack("!HHHIH", 0xC00C, kind, 1, 0, len(ip.packed)) + ip.packed
        flags = 0x8180 if answers else 0x8183  # NXDOMAIN without a script
        header = struct.pack("!HHHHHH", ident, flags, 1, 1 if reply else 0, 0, 0)
        assert self.transport is not None
        self.transport.sendto(header + question + reply, addr)


async def ask(server: tuple[str, int], name: str) -> list[str]:
    """Send one query to ``server`` over UDP; return the addresses answered."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[bytes] = loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            if not answer.done():
                answer.set_result(data)

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=server)
    try:
        transport.sendto(_question(name, 7))
        async with asyncio.timeout(5):
            data = await answer
    finally:
        transport.close()
    count = struct.unpack("!H", data[6:8])[0]
    _, offset = _name(data, 12)
    offset += 4
    found = []
    for _ in range(count):
        kind, _cls, _ttl, length = struct.unpack("!HHIH", data[offset + 2 : offset + 12])
        rdata = data[offset + 12 : offset + 12 + length]
        found.append(str(ipaddress.ip_address(rdata)) if kind in (1, 28) else "")
        offset += 12 + length
    return [a for a in found if a]


@contextlib.asynccontextmanager
async def resolving_through(script: dict[str, list[str]]) -> AsyncIterator[ScriptedDns]:
    """Run a ``ScriptedDns`` and resolve ``*.rebind.test`` through it for the block."""
    loop = asyncio.get_running_loop()
    transport, dns = await loop.create_datagram_endpoint(
        lambda: ScriptedDns(script), local_addr=("127.0.0.1", 0)
    )
    system = loop.getaddrinfo

    async def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if not isinstance(name, str) or not name.endswith(ZONE):
            return await system(host, port, *args, **kwargs)
        addresses = await ask(dns.address, name)
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        infos = []
        for address in addresses:
            if ipaddress.ip_address(address).version == 4:
                infos.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port))))
            else:
                infos.append(
                    (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, int(port), 0, 0))
                )
        return infos

    loop.getaddrinfo = getaddrinfo  # type: ignore[method-assign]
    try:
        yield dns
    finally:
        loop.getaddrinfo = system  # type: ignore[method-assign]
        transport.close()

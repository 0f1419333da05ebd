"""Webhook SSRF: the address checked is the address connected to; embedded IPv4 is unwrapped."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from stagecast.errors import Unprocessable
from stagecast.webhooks import deliveries as delivery
from stagecast.webhooks import service as webhooks
from stagecast.webhooks.deliveries import Claimed, Policy
from tests.webhooks.dns import resolving_through
from tests.webhooks.receiver import receiving

NAME = "hooks.rebind.test"
PUBLIC = "2606:4700:4700::1111"  # a public address; nothing here answers the test's port


def _held(url: str) -> Claimed:
    return Claimed(1, 1, url, "secret", "stream.started", 1, b'{"id":1}')


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


async def test_a_name_rebound_to_loopback_after_the_check_is_not_called() -> None:
    """Public at the check, 127.0.0.1 at the next lookup: the receiver on loopback never hears
    from the webhook, and the name is looked up once per attempt."""
    async with (
        receiving() as receiver,
        resolving_through({NAME: [PUBLIC, "127.0.0.1"]}) as dns,
        httpx.AsyncClient() as client,
    ):
        url = f"http://{NAME}:{_port(receiver.url)}/hook"
        outcome = await delivery.send(client, _held(url), Policy(allow_private=False, timeout=1))
    assert receiver.requests == []
    assert not outcome.delivered
    assert dns.queries == {NAME: 1}


async def test_the_request_goes_to_the_checked_address_with_the_names_host_header() -> None:
    """The one address resolved is connected to; the receiver sees the name in Host."""
    async with (
        receiving() as receiver,
        resolving_through({NAME: ["127.0.0.1", "127.0.0.2"]}) as dns,
        httpx.AsyncClient() as client,
    ):
        port = _port(receiver.url)
        outcome = await delivery.send(
            client, _held(f"http://{NAME}:{port}/hook?x=1"), Policy(allow_private=True)
        )
    assert outcome.status == 200, outcome.error
    [request] = receiver.requests
    assert request.headers["host"] == f"{NAME}:{port}"
    assert request.path == "/hook"
    assert dns.queries == {NAME: 1}


@contextlib.asynccontextmanager
async def _tls_server(tmp_path: Path) -> AsyncIterator[tuple[int, list[str | None]]]:
    """A TLS listener on 127.0.0.1 recording the SNI name of each handshake."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    await asyncio.to_thread(
        subprocess.run,
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-subj", "/CN=other.example", "-days", "1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    names: list[str | None] = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda _sock, name, _ctx: names.append(name)  # type: ignore[assignment,func-returns-value]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1], names
    finally:
        server.close()


async def test_https_sends_the_name_as_sni_and_verifies_the_certificate(tmp_path: Path) -> None:
    """Over https the handshake names the host (not the IP), and a certificate for another
    name is refused."""
    async with (
        _tls_server(tmp_path) as (port, names),
        resolving_through({NAME: ["127.0.0.1"]}),
        httpx.AsyncClient() as client,
    ):
        outcome = await delivery.send(
            client, _held(f"https://{NAME}:{port}/hook"), Policy(allow_private=True, timeout=5)
        )
    assert names == [NAME]
    assert outcome.status is None
    assert outcome.error is not None


EMBEDDED_PRIVATE = [
    "::127.0.0.1",  # IPv4-compatible
    "::10.1.2.3",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:169.254.169.254",
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b:1::a00:1",  # local-use NAT64
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:c0a8:101::",  # 6to4 of 192.168.1.1
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo
    "::",
    "::1",
]
EMBEDDED_PUBLIC = ["64:ff9b::808:808", "2002:808:808::1", "2606:4700:4700::1111", "8.8.8.8"]


@pytest.mark.parametrize("address", EMBEDDED_PRIVATE)
def test_ipv4_inside_ipv6_is_judged_by_the_ipv4(address: str) -> None:
    """IPv4-compatible, -mapped, NAT64 and 6to4 forms of a private address are not public,
    in the URL check and at delivery time."""
    assert not webhooks.is_public_address(address)
    with pytest.raises(Unprocessable):
        webhooks.validate_url(f"http://[{address}]:8080/h", allow_private=False)


@pytest.mark.parametrize("address", EMBEDDED_PUBLIC)
def test_public_addresses_stay_public(address: str) -> None:
    """The unwrapping does not refuse public receivers (NAT64 and 6to4 of public IPv4 too)."""
    assert webhooks.is_public_address(address)

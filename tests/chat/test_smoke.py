"""smoke"""

from __future__ import annotations

import json

from tests.chat.conftest import Live, Room, hello, next_frame, open_socket


async def test_smoke(live: Live, room: Room) -> None:
    """smoke"""
    a = await open_socket(live.socket_url(room.slug), room.auth("ann"))
    h = await hello(a)
    print(h)
    anon = await open_socket(live.socket_url(room.slug))
    print(await hello(anon))
    await a.send(json.dumps({"type": "post", "body": "hi <b>there</b>", "nonce": "n1"}))
    print(await next_frame(a))
    print(await next_frame(anon))
    await anon.send(json.dumps({"type": "post", "body": "x"}))
    print(await next_frame(anon))
    await a.close()
    await anon.close()

"""A demoted broadcaster: the role change takes effect at once on every path."""

from __future__ import annotations

import asyncio
import os
import sys

import httpx

from stagecast.auth import service as accounts
from stagecast.channels import service as channels
from stagecast.ingest.rtmp import BAD_NAME
from stagecast.ingest.rtmp.replies import PUBLISH_START
from tests.conftest import RunningServer
from tests.ingest.rtmp.client import RawClient
from tests.live.streaming import publish, wait_for

SWEEP = 5.0  # the live manager's sweep interval (key checks ride on it)


async def set_role_with_the_cli(server: RunningServer, username: str, role: str) -> None:
    """Run ``stagecast user set-role`` against the running server's database."""
    settings = server.core.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAGECAST_")}
    env["STAGECAST_DATA_DIR"] = str(settings.data_dir)
    if settings.database_url:
        env["STAGECAST_DATABASE_URL"] = settings.database_url
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stagecast", "user", "set-role", username, role,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    assert f"{username} is now {role}" in out.decode()


async def test_a_demoted_broadcaster_is_cut_off_on_every_path(
    live_server: RunningServer, cmaf: tuple[bytes, list[bytes]]
) -> None:
    """After ``stagecast user set-role NAME viewer``: key rotation and webhook creation are
    refused at once, the open RTMP and HTTP push sessions are cut within one sweep, and the
    stream keys open nothing on either path, with a message that says why."""
    db = live_server.core.db
    owner = await accounts.create_account(db, "demoted", "password123", "broadcaster")
    _, rtmp_key = await channels.create_channel(db, owner, "demoted-rtmp")
    _, push_key = await channels.create_channel(db, owner, "demoted-push")
    api = {"Authorization": f"Bearer {await accounts.create_api_token(db, owner.id, 't')}"}
    push = {"Authorization": f"Bearer {push_key}"}
    init, segments = cmaf
    base = "/ingest/demoted-push/source"
    async with (
        httpx.AsyncClient(base_url=live_server.url, timeout=10) as http,
        publish(live_server, rtmp_key, 120) as encoder,
    ):
        await wait_for(http, "/api/v1/channels/demoted-rtmp/live", lambda b: b["state"] == "live")
        assert (await http.put(f"{base}/init.mp4", content=init, headers=push)).status_code == 204
        assert (
            await http.put(f"{base}/s0.m4s", content=segments[0], headers=push)
        ).status_code == 204

        await set_role_with_the_cli(live_server, "demoted", "viewer")

        rotate = await http.post("/api/v1/channels/demoted-rtmp/key", headers=api)
        assert rotate.status_code == 404, rotate.text
        hook = await http.post(
            "/api/v1/channels/demoted-rtmp/webhooks",
            json={"url": "https://example.com/hook"},
            headers=api,
        )
        assert hook.status_code == 404, hook.text
        async with asyncio.timeout(2 * SWEEP + 1):  # cut within one sweep, wherever it is
            await encoder.wait()
            number = 1
            while True:
                put = await http.put(
                    f"{base}/s{number}.m4s", content=segments[number % 5], headers=push
                )
                if put.status_code != 204:
                    break
                number += 1
                await asyncio.sleep(0.2)
        assert put.status_code == 403, put.text
        assert "may not broadcast" in put.json()["error"]["message"]
        again = await http.put(f"{base}/init.mp4", content=init, headers=push)
        assert again.status_code == 403, again.text

    client = await RawClient.open(live_server.runtime.ingest.rtmp.port)
    try:
        await client.connect()
        status = await client.publish(rtmp_key)
    finally:
        await client.close()
    assert (status["code"], status["description"]) == (
        BAD_NAME,
        "the channel's owner may not broadcast",
    )


async def test_a_broadcaster_promoted_again_broadcasts_again(live_server: RunningServer) -> None:
    """Demotion suspends the owner's powers without touching the channel: promoted back, the
    same key publishes."""
    db = live_server.core.db
    owner = await accounts.create_account(db, "yoyo", "password123", "broadcaster")
    _, key = await channels.create_channel(db, owner, "yoyo")
    await accounts.set_role(db, "yoyo", "viewer")
    await accounts.set_role(db, "yoyo", "broadcaster")
    client = await RawClient.open(live_server.runtime.ingest.rtmp.port)
    try:
        await client.connect()
        assert (await client.publish(key))["code"] == PUBLISH_START
    finally:
        await client.close()

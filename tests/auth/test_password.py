"""Changing a password: the current one is proven, others' sessions end, weak ones are refused."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from stagecast.core import Core
from tests.auth.test_api import bearer, login, make_user

NEW = "green kettle 42"


def core_of(app: object) -> Core:
    """Return the running app's Core."""
    core: Core = app.state.runtime.core  # type: ignore[attr-defined]
    return core


def second_client(app: FastAPI) -> httpx.AsyncClient:
    """Another browser, with cookies of its own."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


async def change(
    client: httpx.AsyncClient, csrf: str, current: str, new: str = NEW
) -> httpx.Response:
    """Post a password change with the cookie session of ``client``."""
    return await client.post(
        "/api/v1/auth/password",
        json={"current_password": current, "new_password": new},
        headers={"X-CSRF-Token": csrf},
    )


async def test_a_change_signs_out_every_other_session_but_keeps_this_one(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """After the change the old password fails, the new works, only the asking session stays."""
    await make_user(core_of(app), "alice")
    async with second_client(app) as other, second_client(app) as third:
        await login(other, "alice")
        await login(third, "alice")
        csrf = await login(client, "alice")
        changed = await change(client, csrf, "password123")
        assert changed.status_code == 200, changed.text
        assert changed.json() == {"signed_out": 2}
        assert (await client.get("/api/v1/auth/me")).status_code == 200
        assert (await other.get("/api/v1/auth/me")).status_code == 401
        assert (await third.get("/api/v1/auth/me")).status_code == 401
        old = await other.post(
            "/api/v1/auth/login", json={"username": "alice", "password": "password123"}
        )
        assert old.status_code == 401
        await login(other, "alice", NEW)


async def test_a_wrong_current_password_changes_nothing(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """A wrong current password is a 403 with a message; the password and sessions stay."""
    await make_user(core_of(app), "alice")
    async with second_client(app) as other:
        await login(other, "alice")
        csrf = await login(client, "alice")
        wrong = await change(client, csrf, "not-my-password")
        assert wrong.status_code == 403
        assert wrong.json()["error"] == {
            "code": "wrong_password",
            "message": "the current password is wrong",
        }
        assert (await other.get("/api/v1/auth/me")).status_code == 200
    await login(client, "alice")


async def test_guessing_the_current_password_is_throttled(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """A stolen session cannot guess the password here faster than at the sign-in form."""
    core = core_of(app)
    await make_user(core, "alice")
    csrf = await login(client, "alice")
    statuses = [
        (await change(client, csrf, f"guess-{n}")).status_code
        for n in range(core.settings.login_attempts + 1)
    ]
    assert statuses[0] == 403
    assert statuses[-1] == 429
    assert statuses == sorted(statuses), "once limited, every try is limited"


@pytest.mark.parametrize(
    ("new", "words"),
    [
        ("short", "8-256 characters"),
        ("zzzzzzzzzz", "one character repeated"),
        ("ALICE-and-more", "must not contain the username"),
        ("qwertyuiop", "most common passwords"),
        ("x" * 257, "at most 256 characters"),
    ],
)
async def test_a_weak_new_password_is_refused(
    client: httpx.AsyncClient, app: FastAPI, new: str, words: str
) -> None:
    """A weak new password is a 422 naming the rule; the old password still works."""
    await make_user(core_of(app), "alice")
    csrf = await login(client, "alice")
    weak = await change(client, csrf, "password123", new)
    assert weak.status_code == 422
    assert words in weak.json()["error"]["message"]
    await login(client, "alice")


@pytest.mark.parametrize(
    "body",
    [
        {"current_password": "password123"},
        {"new_password": NEW},
        {"current_password": "", "new_password": NEW},
        {"current_password": "password123", "new_password": NEW, "extra": 1},
    ],
)
async def test_malformed_change_bodies_are_422(
    client: httpx.AsyncClient, app: FastAPI, body: dict[str, object]
) -> None:
    """Missing, empty or unknown fields are a 422 with a message."""
    await make_user(core_of(app), "alice")
    csrf = await login(client, "alice")
    response = await client.post("/api/v1/auth/password", json=body, headers={"X-CSRF-Token": csrf})
    assert response.status_code == 422
    assert response.json()["error"]["message"]


async def test_anonymous_and_csrf_less_changes_are_refused(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """No session is a 401; a cookie session without the CSRF header is a 403."""
    await make_user(core_of(app), "alice")
    body = {"current_password": "password123", "new_password": NEW}
    assert (await client.post("/api/v1/auth/password", json=body)).status_code == 401
    await login(client, "alice")
    no_csrf = await client.post("/api/v1/auth/password", json=body)
    assert no_csrf.status_code == 403
    assert no_csrf.json()["error"]["code"] == "csrf_failed"


async def test_a_token_caller_changes_the_password_and_ends_all_sessions(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """With an API token there is no session to keep: every cookie session ends."""
    token = await make_user(core_of(app), "alice")
    await login(client, "alice")
    changed = await client.post(
        "/api/v1/auth/password",
        json={"current_password": "password123", "new_password": NEW},
        headers=bearer(token),
    )
    assert changed.json() == {"signed_out": 1}
    assert (await client.get("/api/v1/auth/me")).status_code == 401


async def test_sign_out_everywhere_else(client: httpx.AsyncClient, app: FastAPI) -> None:
    """The account page's "sign out other sessions" ends the others and keeps this one."""
    await make_user(core_of(app), "alice")
    async with second_client(app) as other:
        await login(other, "alice")
        csrf = await login(client, "alice")
        ended = await client.post(
            "/api/v1/auth/sessions/sign-out-others", headers={"X-CSRF-Token": csrf}
        )
        assert ended.json() == {"signed_out": 1}
        assert (await other.get("/api/v1/auth/me")).status_code == 401
        assert (await client.get("/api/v1/auth/me")).status_code == 200

"""Accounts over HTTP: sign-in, sessions, CSRF, tokens, registration modes, rate limits."""

from __future__ import annotations

import httpx
import pytest

from stagecast.auth import service
from stagecast.core import Core


async def make_user(
    core: Core, name: str, role: str = "broadcaster", password: str = "password123"
) -> str:
    """Create an account and return an API token for it."""
    account = await service.create_account(core.db, name, password, role)
    return await service.create_api_token(core.db, account.id, "test")


def bearer(token: str) -> dict[str, str]:
    """Return the Authorization header for ``token``."""
    return {"Authorization": f"Bearer {token}"}


async def login(client: httpx.AsyncClient, name: str, password: str = "password123") -> str:
    """Sign in with the session cookie; return the CSRF token."""
    response = await client.post(
        "/api/v1/auth/login", json={"username": name, "password": password}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["csrf_token"])


async def test_login_sets_an_httponly_lax_cookie_and_me_works(
    client: httpx.AsyncClient, app: object
) -> None:
    """A right password opens a session; /auth/me then knows who is calling."""
    core: Core = app.state.runtime.core  # type: ignore[attr-defined]
    await make_user(core, "alice")
    response = await client.post(
        "/api/v1/auth/login", json={"username": "alice", "password": "password123"}
    )
    assert response.status_code == 200
    cookie = response.headers.get_list("set-cookie")[0]
    assert "stagecast_session=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    me = await client.get("/api/v1/auth/me")
    assert me.json()["user"]["username"] == "alice"


async def test_wrong_password_and_unknown_user_look_the_same(
    client: httpx.AsyncClient, app: object
) -> None:
    """Both answer 401 with the same message: usernames are not revealed."""
    await make_user(app.state.runtime.core, "alice")  # type: ignore[attr-defined]
    wrong = await client.post(
        "/api/v1/auth/login", json={"username": "alice", "password": "nope-nope"}
    )
    unknown = await client.post(
        "/api/v1/auth/login", json={"username": "zed", "password": "nope-nope"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()


async def test_cookie_changes_need_the_csrf_header(client: httpx.AsyncClient, app: object) -> None:
    """A cookie-authenticated POST without X-CSRF-Token is refused; with it, it passes."""
    await make_user(app.state.runtime.core, "alice")  # type: ignore[attr-defined]
    csrf = await login(client, "alice")
    body = {"slug": "alice-live"}
    refused = await client.post("/api/v1/channels", json=body)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "csrf_failed"
    accepted = await client.post("/api/v1/channels", json=body, headers={"X-CSRF-Token": csrf})
    assert accepted.status_code == 201


async def test_logout_ends_the_session(client: httpx.AsyncClient, app: object) -> None:
    """After logout the cookie no longer authenticates."""
    await make_user(app.state.runtime.core, "alice")  # type: ignore[attr-defined]
    csrf = await login(client, "alice")
    assert (
        await client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf})
    ).status_code == 204
    assert (await client.get("/api/v1/auth/me")).status_code == 401


async def test_api_tokens_authenticate_and_bad_ones_are_401(
    client: httpx.AsyncClient, app: object
) -> None:
    """A bearer token works without CSRF; a forged or malformed one is a 401."""
    token = await make_user(app.state.runtime.core, "alice")  # type: ignore[attr-defined]
    ok = await client.post("/api/v1/channels", json={"slug": "tok-chan"}, headers=bearer(token))
    assert ok.status_code == 201
    forged = token[:-3] + "xyz"
    for header in (bearer(forged), bearer("garbage"), {"Authorization": "Basic abc"}):
        response = await client.get("/api/v1/channels", headers=header)
        assert response.status_code == 401, header
        assert response.json()["error"]["code"] == "unauthorized"


async def test_login_attempts_are_rate_limited(client: httpx.AsyncClient, app: object) -> None:
    """After the allowed number of attempts the next is a 429 with Retry-After."""
    core: Core = app.state.runtime.core  # type: ignore[attr-defined]
    core.settings.login_attempts = 3
    for _ in range(3):
        r = await client.post(
            "/api/v1/auth/login", json={"username": "bob", "password": "wrong-pass"}
        )
        assert r.status_code == 401
    limited = await client.post(
        "/api/v1/auth/login", json={"username": "bob", "password": "wrong-pass"}
    )
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1


async def test_open_registration_makes_viewers(client: httpx.AsyncClient) -> None:
    """With open registration anyone can sign up, as a viewer; taken names are a 409."""
    body = {"username": "newbie", "password": "password123"}
    created = await client.post("/api/v1/auth/register", json=body)
    assert created.status_code == 201
    assert created.json()["role"] == "viewer"
    again = await client.post("/api/v1/auth/register", json=body)
    assert again.status_code == 409


async def test_invite_only_registration(client: httpx.AsyncClient, app: object) -> None:
    """Invite mode needs a valid unused code; the code's role is granted once."""
    core: Core = app.state.runtime.core  # type: ignore[attr-defined]
    core.settings.registration = "invite"
    admin = await make_user(core, "root", role="admin")
    no_code = await client.post(
        "/api/v1/auth/register", json={"username": "eve", "password": "password123"}
    )
    assert no_code.status_code == 422
    code = (
        await client.post("/api/v1/invites", json={"role": "broadcaster"}, headers=bearer(admin))
    ).json()["invite"]
    first = await client.post(
        "/api/v1/auth/register", json={"username": "eve", "password": "password123", "invite": code}
    )
    assert first.status_code == 201
    assert first.json()["role"] == "broadcaster"
    reused = await client.post(
        "/api/v1/auth/register",
        json={"username": "mallory", "password": "password123", "invite": code},
    )
    assert reused.status_code == 422


async def test_admin_only_user_management(client: httpx.AsyncClient, app: object) -> None:
    """Admins list and create users and change roles; others get 403."""
    core: Core = app.state.runtime.core  # type: ignore[attr-defined]
    admin = await make_user(core, "root", role="admin")
    viewer = await make_user(core, "vic", role="viewer")
    assert (await client.get("/api/v1/users", headers=bearer(viewer))).status_code == 403
    made = await client.post(
        "/api/v1/users",
        json={"username": "carl", "password": "password123", "role": "broadcaster"},
        headers=bearer(admin),
    )
    assert made.status_code == 201
    changed = await client.patch(
        "/api/v1/users/carl", json={"role": "viewer"}, headers=bearer(admin)
    )
    assert changed.json()["role"] == "viewer"
    listed = await client.get("/api/v1/users?limit=2", headers=bearer(admin))
    assert [u["username"] for u in listed.json()["items"]] == ["root", "vic"]
    assert listed.json()["next_after"] is not None


@pytest.mark.parametrize(
    ("body", "what"),
    [
        ({"username": "alice", "password": "password123", "admin": True}, "unknown field"),
        ({"username": 5, "password": "password123"}, "wrong type"),
        ({"username": "a" * 33, "password": "password123"}, "too long"),
        ({"username": "Bad Name!", "password": "password123"}, "bad characters"),
        ({"username": "alice", "password": "short"}, "short password"),
        ({"username": "alice"}, "missing field"),
    ],
)
async def test_bad_registration_bodies_are_422(
    client: httpx.AsyncClient, body: dict[str, object], what: str
) -> None:
    """Every class of bad input gets a 422 with a message, never a 500."""
    response = await client.post("/api/v1/auth/register", json=body)
    assert response.status_code == 422, what
    assert response.json()["error"]["message"]


async def test_malformed_json_is_a_4xx(client: httpx.AsyncClient) -> None:
    """A body that is not JSON at all is refused with a 422 and a message."""
    response = await client.post(
        "/api/v1/auth/login", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid"

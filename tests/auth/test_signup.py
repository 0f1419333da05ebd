"""Sign-up under each registration mode, and the admins' invites: make, list, revoke."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.auth.models import invite
from stagecast.core import Core
from stagecast.db import Kind
from stagecast.db.schema import utcnow
from tests.auth.test_api import bearer, make_user

STRONG = "green kettle 42"


def core_of(app: object) -> Core:
    """Return the running app's Core."""
    core: Core = app.state.runtime.core  # type: ignore[attr-defined]
    return core


async def sign_up(
    client: httpx.AsyncClient, name: str, invite_code: str | None = None, password: str = STRONG
) -> httpx.Response:
    """Post a registration."""
    body: dict[str, str] = {"username": name, "password": password}
    if invite_code is not None:
        body["invite"] = invite_code
    return await client.post("/api/v1/auth/register", json=body)


async def new_invite(client: httpx.AsyncClient, admin: str, role: str = "viewer") -> str:
    """Make an invite as ``admin`` (a token); return its code."""
    made = await client.post("/api/v1/invites", json={"role": role}, headers=bearer(admin))
    assert made.status_code == 201, made.text
    return str(made.json()["invite"])


def refused(response: httpx.Response, status: int, words: str) -> None:
    """Assert ``response`` is a ``status`` whose message says ``words``."""
    assert response.status_code == status, response.text
    assert words in response.json()["error"]["message"]


@pytest.mark.parametrize("mode", ["open", "invite", "closed"])
async def test_the_registration_mode_is_public(
    client: httpx.AsyncClient, app: object, mode: str
) -> None:
    """Anyone can ask who may sign up, so the sign-up page can say it before the form."""
    core_of(app).settings.registration = mode  # type: ignore[assignment]
    answer = await client.get("/api/v1/auth/registration")
    assert answer.status_code == 200
    assert answer.json() == {"mode": mode}


async def test_closed_registration_refuses_with_a_reason(
    client: httpx.AsyncClient, app: object
) -> None:
    """With registration closed, sign-up is a 403 that says to ask the admin, invite or not."""
    core = core_of(app)
    core.settings.registration = "closed"
    admin = await make_user(core, "root", role="admin")
    code = await new_invite(client, admin)
    refused(await sign_up(client, "newbie"), 403, "registration is closed")
    refused(await sign_up(client, "newbie", code), 403, "registration is closed")


@pytest.mark.parametrize(
    ("password", "words"),
    [
        ("short1", "at least 8 characters"),
        ("aaaaaaaaaaaa", "one character repeated"),
        ("xnewbiex99", "must not contain the username"),
        ("Password", "most common passwords"),
        ("12345678", "most common passwords"),
    ],
)
async def test_weak_passwords_are_refused_with_the_rule_broken(
    client: httpx.AsyncClient, password: str, words: str
) -> None:
    """A weak password is a 422 naming the rule, and no account is made."""
    response = await sign_up(client, "newbie", password=password)
    assert response.status_code == 422, response.text
    assert words in response.json()["error"]["message"]
    assert (await sign_up(client, "newbie")).status_code == 201


async def test_an_invite_signs_up_once_with_its_role(
    client: httpx.AsyncClient, app: object
) -> None:
    """Invite mode: no code, a forged or a malformed code are 422; a good one works once."""
    core = core_of(app)
    core.settings.registration = "invite"
    admin = await make_user(core, "root", role="admin")
    code = await new_invite(client, admin, role="broadcaster")
    refused(await sign_up(client, "eve"), 422, "invite code is required")
    refused(await sign_up(client, "eve", code[:-2] + "zz"), 422, "invalid")
    refused(await sign_up(client, "eve", "not-a-code"), 422, "invalid")
    first = await sign_up(client, "eve", code)
    assert first.status_code == 201
    assert first.json()["role"] == "broadcaster"
    refused(await sign_up(client, "mallory", code), 422, "already used")


async def test_an_expired_invite_is_refused(client: httpx.AsyncClient, app: object) -> None:
    """An invite past its expiry is a 422 and is listed as expired."""
    core = core_of(app)
    core.settings.registration = "invite"
    admin = await make_user(core, "root", role="admin")
    code = await new_invite(client, admin)

    async def expire(conn: AsyncConnection) -> None:
        await conn.execute(update(invite).values(expires_at=utcnow() - timedelta(seconds=1)))

    await core.db.run(expire, kind=Kind.IDEMPOTENT_WRITE, name="expire")
    refused(await sign_up(client, "eve", code), 422, "expired")
    listed = await client.get("/api/v1/invites", headers=bearer(admin))
    assert [i["state"] for i in listed.json()["items"]] == ["expired"]


async def test_open_registration_still_honours_an_invite(
    client: httpx.AsyncClient, app: object
) -> None:
    """Open mode signs up viewers; an invite given anyway grants its role, a bad one is a 422."""
    core = core_of(app)
    admin = await make_user(core, "root", role="admin")
    assert (await sign_up(client, "plain")).json()["role"] == "viewer"
    refused(await sign_up(client, "faker", "inv_0123456789abcdef_nope"), 422, "invalid")
    code = await new_invite(client, admin, role="broadcaster")
    assert (await sign_up(client, "invited", code)).json()["role"] == "broadcaster"


async def test_admins_list_invites_newest_first_with_who_used_them(
    client: httpx.AsyncClient, app: object
) -> None:
    """The list pages newest first and shows each invite's state, maker and user."""
    core = core_of(app)
    admin = await make_user(core, "root", role="admin")
    codes = [await new_invite(client, admin) for _ in range(3)]
    assert (await sign_up(client, "joiner", codes[0])).status_code == 201
    first = (await client.get("/api/v1/invites?limit=2", headers=bearer(admin))).json()
    assert [i["state"] for i in first["items"]] == ["open", "open"]
    assert first["items"][0]["code_start"] == codes[2][:10]
    rest = await client.get(
        "/api/v1/invites", params={"limit": 2, "cursor": first["next"]}, headers=bearer(admin)
    )
    assert rest.json()["next"] is None
    (used,) = rest.json()["items"]
    assert (used["state"], used["created_by"], used["used_by"]) == ("used", "root", "joiner")
    bad = await client.get("/api/v1/invites?cursor=forged", headers=bearer(admin))
    assert bad.status_code == 400


async def test_revoking_an_invite_stops_its_code(client: httpx.AsyncClient, app: object) -> None:
    """A revoked invite cannot sign up; revoking a used or unknown one is a 409 / 404."""
    core = core_of(app)
    core.settings.registration = "invite"
    admin = await make_user(core, "root", role="admin")
    unused, used = await new_invite(client, admin), await new_invite(client, admin)
    assert (await sign_up(client, "early", used)).status_code == 201
    items = (await client.get("/api/v1/invites", headers=bearer(admin))).json()["items"]
    ids = {i["state"]: i["id"] for i in items}
    gone = await client.delete(f"/api/v1/invites/{ids['open']}", headers=bearer(admin))
    assert gone.status_code == 204
    refused(await sign_up(client, "late", unused), 422, "invalid")
    again = await client.delete(f"/api/v1/invites/{ids['open']}", headers=bearer(admin))
    refused(again, 404, "no invite")
    refused(
        await client.delete(f"/api/v1/invites/{ids['used']}", headers=bearer(admin)), 409, "used"
    )
    refused(await client.delete("/api/v1/invites/0", headers=bearer(admin)), 422, "")


async def test_only_admins_manage_invites(client: httpx.AsyncClient, app: object) -> None:
    """Broadcasters and viewers get 403 on every invite call, anonymous callers 401."""
    core = core_of(app)
    for role in ("broadcaster", "viewer"):
        token = await make_user(core, f"not-{role}", role=role)
        for method, path in (("POST", "/api/v1/invites"), ("GET", "/api/v1/invites")):
            response = await client.request(method, path, json={}, headers=bearer(token))
            assert response.status_code == 403, (role, path)
        assert (await client.delete("/api/v1/invites/1", headers=bearer(token))).status_code == 403
    assert (await client.get("/api/v1/invites")).status_code == 401


@pytest.mark.parametrize(
    ("mode", "shows", "hides"),
    [
        ("closed", "Sign-up is closed on this server", 'id="signup-form"'),
        ("invite", 'id="invite" name="invite"', "Sign-up is closed"),
        ("open", 'id="signup-form"', 'id="invite"'),
    ],
)
async def test_the_sign_up_page_follows_the_mode(
    client: httpx.AsyncClient, app: object, mode: str, shows: str, hides: str
) -> None:
    """Closed says so instead of a form; invite mode asks for the code; open does not."""
    core_of(app).settings.registration = mode  # type: ignore[assignment]
    page = await client.get("/signup")
    assert page.status_code == 200
    assert shows in page.text
    assert hides not in page.text


async def test_an_invite_link_prefills_the_code_escaped(client: httpx.AsyncClient) -> None:
    """``/signup?invite=`` fills the field, as text: markup in it is escaped, not run."""
    page = await client.get("/signup", params={"invite": '"><script>alert(1)</script>'})
    assert 'value="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in page.text
    assert "<script>alert(1)" not in page.text

"""Who is calling: API token (``Authorization: Bearer``) or session cookie, plus CSRF.

A cookie-authenticated request that changes state must carry the session's CSRF token in
``X-CSRF-Token``; bearer-token requests need none (a browser never adds that header itself).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from stagecast.auth.service import Account, session_account, token_account
from stagecast.core import Core, get_core
from stagecast.errors import Forbidden, Unauthorized

SESSION_COOKIE = "stagecast_session"
CSRF_COOKIE = "stagecast_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class CsrfFailed(Forbidden):
    """A cookie-authenticated change came without the right CSRF token."""

    code = "csrf_failed"


@dataclass(frozen=True)
class Caller:
    """The identity behind a request, and how it was proven."""

    account: Account | None
    via: str | None = None  # "token", "cookie" or None
    csrf_token: str | None = None


async def identify(connection: HTTPConnection, core: Core) -> Caller:
    """Return the caller of ``connection``. Raises Unauthorized for a bad bearer token."""
    header = connection.headers.get("authorization", "")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("Authorization must be 'Bearer <api token>'")
        found = await token_account(core.db, value.strip())
        if found is None:
            raise Unauthorized("invalid or revoked API token")
        return Caller(found, "token")
    cookie = connection.cookies.get(SESSION_COOKIE)
    if cookie:
        session = await session_account(core.db, cookie)
        if session is not None:
            return Caller(session[0], "cookie", session[1])
    return Caller(None)


async def get_caller(
    connection: HTTPConnection, core: Annotated[Core, Depends(get_core)]
) -> Caller:
    """FastAPI dependency: the caller, with CSRF enforced for cookie-authenticated changes."""
    caller = await identify(connection, core)
    method = connection.scope.get("method", "GET")
    if caller.via == "cookie" and method not in SAFE_METHODS:
        # Header values arrive as Latin-1 text: compare bytes, which any value encodes to
        # (compare_digest refuses str with non-ASCII characters).
        presented = connection.headers.get(CSRF_HEADER, "").encode()
        expected = (caller.csrf_token or "").encode()
        if not expected or not hmac.compare_digest(presented, expected):
            raise CsrfFailed("missing or wrong X-CSRF-Token header")
    return caller


async def optional_account(caller: Annotated[Caller, Depends(get_caller)]) -> Account | None:
    """FastAPI dependency: the account, or None for an anonymous caller."""
    return caller.account


async def require_account(caller: Annotated[Caller, Depends(get_caller)]) -> Account:
    """FastAPI dependency: the account; 401 if anonymous."""
    if caller.account is None:
        raise Unauthorized("sign in or present an API token")
    return caller.account


async def require_admin(account: Annotated[Account, Depends(require_account)]) -> Account:
    """FastAPI dependency: an admin account; 403 for anyone else signed in."""
    if not account.is_admin:
        raise Forbidden("admins only")
    return account


CoreDep = Annotated[Core, Depends(get_core)]
CallerDep = Annotated[Caller, Depends(get_caller)]
AccountDep = Annotated[Account, Depends(require_account)]
MaybeAccountDep = Annotated[Account | None, Depends(optional_account)]
AdminDep = Annotated[Account, Depends(require_admin)]

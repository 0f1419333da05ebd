"""HTTP endpoints for signing in and out, registering, API tokens, users and invites."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from stagecast.auth import service
from stagecast.auth.deps import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    AccountDep,
    AdminDep,
    CallerDep,
    CoreDep,
)
from stagecast.auth.schemas import (
    ApiTokenIn,
    ApiTokenOut,
    InviteIn,
    InviteOut,
    LoginIn,
    RegisterIn,
    RoleIn,
    SessionOut,
    UserCreateIn,
    UserOut,
    UserPage,
)
from stagecast.auth.throttle import SignInThrottle
from stagecast.core import Core
from stagecast.errors import Unauthorized, error_responses

router = APIRouter(prefix="/api/v1", tags=["accounts"])


def user_out(account: service.Account) -> UserOut:
    """Shape an account for the wire."""
    return UserOut(
        id=account.id,
        username=account.username,
        role=account.role,
        created_at=account.created_at,
    )


def _secure(request: Request, core: Core) -> bool:
    mode = core.settings.cookie_secure
    return mode == "always" or (mode == "auto" and request.url.scheme == "https")


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.post("/auth/login", response_model=SessionOut, responses=error_responses(401, 429))
async def login(body: LoginIn, request: Request, response: Response, core: CoreDep) -> SessionOut:
    """Sign in with a username and password; sets the session cookie.

    429 past the attempts allowed per address, and for an address that failed for this user
    while the user's growing delay runs (``stagecast.auth.throttle``).
    """
    throttle = SignInThrottle(core.limiter, core.settings)
    username, client = body.username.lower(), _client(request)
    await throttle.check(username, client)
    account = await service.authenticate(core.db, username, body.password)
    if account is None:
        await throttle.failed(username, client)
        raise Unauthorized("wrong username or password")
    await throttle.succeeded(username, client)
    token, csrf = await service.open_session(core.db, account.id, core.settings.session_days)
    max_age = int(core.settings.session_days * 86400)
    secure = _secure(request, core)
    response.set_cookie(
        SESSION_COOKIE, token, max_age=max_age, httponly=True, samesite="lax", secure=secure
    )
    response.set_cookie(CSRF_COOKIE, csrf, max_age=max_age, samesite="lax", secure=secure)
    return SessionOut(user=user_out(account), csrf_token=csrf)


@router.post("/auth/logout", status_code=204)
async def logout(request: Request, response: Response, caller: CallerDep, core: CoreDep) -> None:
    """End the cookie session (a no-op for token callers)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if caller.via == "cookie" and cookie:
        await service.close_session(core.db, cookie)
    response.delete_cookie(SESSION_COOKIE)
    response.delete_cookie(CSRF_COOKIE)


@router.get("/auth/me", response_model=SessionOut)
async def me(caller: CallerDep) -> SessionOut:
    """Return the signed-in account (401 when anonymous)."""
    if caller.account is None:
        raise Unauthorized("not signed in")
    return SessionOut(user=user_out(caller.account), csrf_token=caller.csrf_token)


@router.post(
    "/auth/register",
    response_model=UserOut,
    status_code=201,
    responses=error_responses(403, 404, 409, 429),
)
async def register(body: RegisterIn, request: Request, core: CoreDep) -> UserOut:
    """Create an account (open registration, or with an invite code)."""
    await SignInThrottle(core.limiter, core.settings).check_address(_client(request))
    account = await service.register(
        core.db,
        body.username,
        body.password,
        mode=core.settings.registration,
        invite_code=body.invite,
    )
    return user_out(account)


@router.post("/auth/tokens", response_model=ApiTokenOut, status_code=201)
async def create_token(body: ApiTokenIn, account: AccountDep, core: CoreDep) -> ApiTokenOut:
    """Create an API token for the caller; the token is shown only in this response."""
    return ApiTokenOut(token=await service.create_api_token(core.db, account.id, body.name))


@router.get("/users", response_model=UserPage)
async def list_users(
    _: AdminDep,
    core: CoreDep,
    after: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> UserPage:
    """List accounts in id order (admins only); page with ``after``."""
    accounts = await service.list_accounts(core.db, after_id=after, limit=limit)
    next_after = accounts[-1].id if len(accounts) == limit else None
    return UserPage(items=[user_out(a) for a in accounts], next_after=next_after)


@router.post("/users", response_model=UserOut, status_code=201, responses=error_responses(409))
async def create_user(body: UserCreateIn, _: AdminDep, core: CoreDep) -> UserOut:
    """Create an account with a role (admins only)."""
    return user_out(await service.create_account(core.db, body.username, body.password, body.role))


@router.patch("/users/{username}", response_model=UserOut)
async def change_role(username: str, body: RoleIn, _: AdminDep, core: CoreDep) -> UserOut:
    """Change an account's role (admins only)."""
    return user_out(await service.set_role(core.db, username, body.role))


@router.post("/invites", response_model=InviteOut, status_code=201)
async def create_invite(body: InviteIn, admin: AdminDep, core: CoreDep) -> InviteOut:
    """Create a single-use invite code (admins only)."""
    code = await service.create_invite(core.db, admin.id, body.role, body.days)
    return InviteOut(invite=code, role=body.role)

"""HTTP endpoints for signing in and out, registering, API tokens, users and invites."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from stagecast import cursors
from stagecast.auth import invites, service
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
    InviteItem,
    InviteOut,
    InvitePage,
    LoginIn,
    PasswordChangeIn,
    RegisterIn,
    RegistrationOut,
    RoleIn,
    SessionOut,
    SignedOutOut,
    UserCreateIn,
    UserOut,
    UserPage,
)
from stagecast.auth.throttle import SignInThrottle
from stagecast.core import Core
from stagecast.db.schema import utcnow
from stagecast.errors import Forbidden, Unauthorized, error_responses

router = APIRouter(prefix="/api/v1", tags=["accounts"])
_INVITES = "invites"  # the cursor purpose of the invite list
InviteId = Annotated[int, Path(ge=1, le=2**63 - 1)]


class WrongPassword(Forbidden):
    """The current password given with a change is not the account's."""

    code = "wrong_password"


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


@router.get("/auth/registration", response_model=RegistrationOut)
async def registration(core: CoreDep) -> RegistrationOut:
    """Say who may sign up: ``open`` (anyone), ``invite`` (with a code) or ``closed``."""
    return RegistrationOut(mode=core.settings.registration)


def _own_session(request: Request, caller: service.Account | None, via: str | None) -> str | None:
    return request.cookies.get(SESSION_COOKIE) if caller is not None and via == "cookie" else None


@router.post(
    "/auth/password", response_model=SignedOutOut, responses=error_responses(401, 403, 422, 429)
)
async def change_password(
    body: PasswordChangeIn, request: Request, caller: CallerDep, core: CoreDep
) -> SignedOutOut:
    """Change the caller's password; every other login session of the account is signed out.

    403 ``wrong_password`` when ``current_password`` is wrong (counted like a failed sign-in,
    so it cannot be guessed here either), 422 for a weak new password.
    """
    if caller.account is None:
        raise Unauthorized("sign in to change your password")
    throttle = SignInThrottle(core.limiter, core.settings)
    username, client = caller.account.username, _client(request)
    await throttle.check(username, client)
    if await service.authenticate(core.db, username, body.current_password) is None:
        await throttle.failed(username, client)
        raise WrongPassword("the current password is wrong")
    await throttle.succeeded(username, client)
    ended = await service.change_password(
        core.db,
        caller.account,
        body.new_password,
        keep_session=_own_session(request, caller.account, caller.via),
    )
    return SignedOutOut(signed_out=ended)


@router.post("/auth/sessions/sign-out-others", response_model=SignedOutOut)
async def sign_out_others(request: Request, caller: CallerDep, core: CoreDep) -> SignedOutOut:
    """End every login session of the caller's account except the one asking."""
    if caller.account is None:
        raise Unauthorized("not signed in")
    keep = _own_session(request, caller.account, caller.via)
    return SignedOutOut(
        signed_out=await service.close_other_sessions(core.db, caller.account.id, keep)
    )


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
    code = await invites.create_invite(core.db, admin.id, body.role, body.days)
    return InviteOut(invite=code, role=body.role)


@router.get("/invites", response_model=InvitePage, responses=error_responses(400, 403))
async def list_invites(
    _: AdminDep,
    core: CoreDep,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> InvitePage:
    """List invites, newest first, with who made and who used each (admins only)."""
    secret = core.secret_key
    before = cursors.after_id(secret, _INVITES, 0, cursor)
    found = await invites.list_invites(core.db, before_id=before, limit=limit + 1)
    page, more = found[:limit], len(found) > limit
    now = utcnow()
    items = [
        InviteItem(
            id=i.id,
            code_start=f"{invites.INVITE_PREFIX}_{i.lookup_id[:6]}",
            role=i.role,
            state=i.state(now),
            created_by=i.created_by,
            created_at=i.created_at,
            expires_at=i.expires_at,
            used_by=i.used_by,
            used_at=i.used_at,
        )
        for i in page
    ]
    last = page[-1].id if more and page else None
    return InvitePage(items=items, next=cursors.next_by_id(secret, _INVITES, 0, last))


@router.delete("/invites/{invite_id}", status_code=204, responses=error_responses(403, 404, 409))
async def revoke_invite(invite_id: InviteId, _: AdminDep, core: CoreDep) -> None:
    """Revoke an unused invite: its code stops working (admins only; 409 once it was used)."""
    await invites.revoke_invite(core.db, invite_id)

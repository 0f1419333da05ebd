"""Wire formats of the account endpoints. Unknown fields are refused."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["admin", "broadcaster", "viewer"]


class Strict(BaseModel):
    """Base of request bodies: unknown fields are a 422."""

    model_config = ConfigDict(extra="forbid")


class LoginIn(Strict):
    """Credentials for a session."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class RegisterIn(Strict):
    """A new account; ``invite`` is required when registration is invite-only."""

    username: str = Field(min_length=3, max_length=32)
    password: str = Field(min_length=8, max_length=256)
    invite: str | None = Field(default=None, max_length=200)


class UserCreateIn(Strict):
    """An account an admin creates."""

    username: str = Field(min_length=3, max_length=32)
    password: str = Field(min_length=8, max_length=256)
    role: Role = "viewer"


class RoleIn(Strict):
    """A role change."""

    role: Role


class ApiTokenIn(Strict):
    """A new API token's label."""

    name: str = Field(default="api", min_length=1, max_length=64)


class InviteIn(Strict):
    """A new invite."""

    role: Role = "viewer"
    days: float = Field(default=7.0, gt=0, le=90)


class PasswordChangeIn(Strict):
    """A password change: the current password proves it is the owner asking."""

    current_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=1, max_length=256)


class UserOut(BaseModel):
    """An account as the API shows it."""

    id: int
    username: str
    role: Role
    created_at: datetime


class SessionOut(BaseModel):
    """The signed-in account and the CSRF token its cookie session needs."""

    user: UserOut
    csrf_token: str | None = None


class ApiTokenOut(BaseModel):
    """A freshly made API token (shown once)."""

    token: str


class InviteOut(BaseModel):
    """A freshly made invite code (shown once)."""

    invite: str
    role: Role


class UserPage(BaseModel):
    """A page of accounts in id order."""

    items: list[UserOut]
    next_after: int | None


class SignedOutOut(BaseModel):
    """How many other login sessions a change ended."""

    signed_out: int


class RegistrationOut(BaseModel):
    """Who may sign up here: anyone, holders of an invite code, or nobody."""

    mode: Literal["open", "invite", "closed"]


InviteState = Literal["open", "used", "expired"]


class InviteItem(BaseModel):
    """An invite in the admins' list; the code itself is shown only when it is made."""

    id: int
    code_start: str
    role: Role
    state: InviteState
    created_by: str | None
    created_at: datetime
    expires_at: datetime
    used_by: str | None
    used_at: datetime | None


class InvitePage(BaseModel):
    """A page of invites, newest first; ``next`` continues the list."""

    items: list[InviteItem]
    next: str | None

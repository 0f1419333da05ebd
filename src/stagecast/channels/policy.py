"""The one policy function that decides who may do what on a channel.

Every chat, moderation, VOD, live and metrics action asks ``allowed`` (or ``require``), given
the caller's ``Access`` to the channel. A caller who may not even know the channel exists gets
NotFound, never Forbidden, so private channels and foreign studios are not revealed.

Watching (live HLS, VODs, the viewer feed, chat history) goes through ``can_view``: a
playback token (``?token=``, see ``channels.tokens``) is judged by ``with_token``, and the
caller's moderator grant is read only when nothing cheaper lets them in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from enum import StrEnum

from stagecast.auth.service import Account
from stagecast.channels import tokens
from stagecast.errors import NotFound


class Action(StrEnum):
    """Things a caller may try on a channel."""

    VIEW = "view"  # watch live/VODs, read chat history
    POST = "post"  # send chat messages (bans are the chat policy's business)
    STUDIO = "studio"  # live metrics, moderation log, moderation queue
    MANAGE = "manage"  # settings, stream key, VOD edits
    MANAGE_MODERATORS = "manage_moderators"
    DELETE_MESSAGE = "delete_message"
    TIMEOUT = "timeout"
    BAN = "ban"
    MANAGE_FILTERS = "manage_filters"


@dataclass(frozen=True)
class Grant:
    """What a moderator may do on one channel."""

    can_delete: bool = True
    can_timeout: bool = True
    can_ban: bool = True
    can_manage_filters: bool = False


@dataclass(frozen=True)
class Access:
    """A caller's standing on one channel."""

    channel_id: int
    owner_id: int
    visibility: str
    account: Account | None
    moderator: Grant | None = None
    playback_token_ok: bool = False

    @property
    def is_owner(self) -> bool:
        """Tell whether the caller owns the channel and may still broadcast.

        A demoted owner (role viewer) keeps the channel's rows but none of its powers, until
        promoted again: to the policy they are a viewer like any other.
        """
        account = self.account
        return account is not None and account.id == self.owner_id and account.can_broadcast

    @property
    def is_admin(self) -> bool:
        """Tell whether the caller administers the instance."""
        return self.account is not None and self.account.is_admin

    @property
    def is_staff(self) -> bool:
        """Tell whether the caller is the owner, a moderator or an admin."""
        return self.is_owner or self.is_admin or self.moderator is not None


def allowed(access: Access, action: Action) -> bool:
    """Tell whether the caller may perform ``action`` on the channel."""
    viewer = access.visibility != "private" or access.is_staff or access.playback_token_ok
    if action is Action.VIEW:
        return viewer
    if action is Action.POST:
        return viewer and access.account is not None
    if access.is_owner or access.is_admin:
        return True
    grant = access.moderator
    if grant is None:
        return False
    return {
        Action.STUDIO: True,
        Action.DELETE_MESSAGE: grant.can_delete,
        Action.TIMEOUT: grant.can_timeout,
        Action.BAN: grant.can_ban,
        Action.MANAGE_FILTERS: grant.can_manage_filters,
    }.get(action, False)


def require(access: Access, action: Action, *, what: str = "channel") -> None:
    """Raise if the caller may not perform ``action``: NotFound unless they may view it.

    Someone who may view but not moderate gets NotFound too: the moderation surface of a
    channel is not revealed to non-members.
    """
    if not allowed(access, action):
        raise NotFound(f"{what} not found")


def with_token(access: Access, secret: str, token: str | None, target: str) -> Access:
    """Return ``access`` with ``playback_token_ok`` set: is ``token`` a live playback token
    for ``target`` (``tokens.channel_target`` or ``tokens.vod_target``)?"""
    return replace(access, playback_token_ok=tokens.allows(secret, token, target))


Standing = Callable[[], Awaitable[Access]]


async def can_view(access: Access, standing: Standing | None = None, *, what: str) -> Access:
    """Return the access under which the caller may watch; raise NotFound if they may not.

    ``access`` holds what is known without a query (visibility, owner, account, the token's
    verdict from ``with_token``). ``standing`` returns the caller's full standing (their
    moderator grant); it is awaited only when ``access`` does not let them in, and keeps the
    token's verdict.
    """
    if not allowed(access, Action.VIEW) and standing is not None:
        access = replace(await standing(), playback_token_ok=access.playback_token_ok)
    require(access, Action.VIEW, what=what)
    return access

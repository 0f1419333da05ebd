"""The chat socket's protocol: every frame the server sends and a client may send, and their JSON.

Each frame is a frozen dataclass whose ``type`` field is the tag clients switch on; ``encode``
is the one way a server frame becomes the text a socket receives, ``parse`` the one way a
client's text becomes a frame. The README ("Chat") documents the same frames; the browser's
``chat.js`` reads them, so field names and values here are the wire format.

The frames a channel's room fans out (``Message``, ``Deleted``, ``Purged``, ``Review``,
``Reviewed``) also travel on the bus inside ``hub.ChatEvent``; their fields are therefore plain
JSON values, datetimes, tuples and nested frozen dataclasses.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal

from stagecast.chat.errors import FrameTooLarge, InvalidFrame, InvalidJson, UnknownType
from stagecast.chat.messages import NONCE_MAX
from stagecast.chat.messages import Message as StoredMessage
from stagecast.errors import StagecastError

# A frame this many times over the soft limit closes the socket (1009) instead.
HARD_LIMIT_FACTOR = 8
TOO_BIG = 1009  # the WebSocket close code "message too big"


# Server to client.


@dataclass(frozen=True)
class Powers:
    """What a moderator may do in the channel (``hello.moderator``)."""

    delete: bool
    timeout: bool
    ban: bool
    filters: bool

    @property
    def granted(self) -> bool:
        """Tell whether any of them is granted (a plain viewer's hello says null instead)."""
        return self.delete or self.timeout or self.ban or self.filters


@dataclass(frozen=True)
class Hello:
    """The first frame: who the caller is here and what they may do."""

    channel: str
    last_id: int  # the newest id this process has delivered
    user: str | None
    can_post: bool
    moderator: Powers | None
    slow_mode: int  # seconds
    timeout_until: datetime | None
    max_length: int  # code points
    heartbeat: float  # seconds between pings
    # Seconds left of the timeout (a client counts down from it, whatever its clock says).
    timeout_remaining: float | None = None
    type: Literal["hello"] = "hello"
    omitted_when_none: ClassVar[frozenset[str]] = frozenset({"timeout_remaining"})


@dataclass(frozen=True)
class Message:
    """A chat message, in id order, exactly once per socket."""

    id: int
    author: str
    body: str  # raw text: the page escapes it
    sent_at: datetime
    nonce: str | None = None
    type: Literal["message"] = "message"

    @classmethod
    def of(cls, stored: StoredMessage) -> Message:
        """Return the frame of a stored message."""
        return cls(stored.id, stored.author, stored.body, stored.sent_at, stored.nonce)


@dataclass(frozen=True)
class Resumed:
    """After ``?last_id=``: the ``count`` missed messages were just sent; live ones follow."""

    last_id: int
    count: int
    type: Literal["resumed"] = "resumed"


@dataclass(frozen=True)
class Reset:
    """Too much was missed: reload history over REST; live messages after ``last_id`` follow."""

    last_id: int
    type: Literal["reset"] = "reset"


@dataclass(frozen=True)
class Deleted:
    """Message ``id`` was deleted: remove it."""

    id: int
    type: Literal["deleted"] = "deleted"


@dataclass(frozen=True)
class Purged:
    """Messages ``ids`` were removed with their author's ban: remove them all."""

    ids: tuple[int, ...]
    type: Literal["purged"] = "purged"


@dataclass(frozen=True)
class Error:
    """A frame or post was refused (the socket stays open unless a close follows)."""

    code: str
    message: str
    retry_after: float | None = None  # seconds; left out of the JSON when None
    nonce: str | None = None  # the refused post's; left out of the JSON when None
    type: Literal["error"] = "error"
    omitted_when_none: ClassVar[frozenset[str]] = frozenset({"retry_after", "nonce"})

    @classmethod
    def of(cls, error: StagecastError, nonce: str | None = None) -> Error:
        """Return the frame that reports ``error`` (to the post of ``nonce``, if any)."""
        retry_after = round(error.retry_after, 3) if error.retry_after is not None else None
        return cls(error.code, error.message, retry_after, nonce)


@dataclass(frozen=True)
class Held:
    """Your post (``nonce``) was held for review by a filter."""

    nonce: str | None
    message: str = "held for review"
    type: Literal["held"] = "held"


@dataclass(frozen=True)
class Timeout:
    """You are timed out until ``until`` (None: lifted), ``remaining`` seconds from now."""

    until: datetime | None
    remaining: float | None = None  # left out of the JSON when None
    type: Literal["timeout"] = "timeout"
    omitted_when_none: ClassVar[frozenset[str]] = frozenset({"remaining"})

    @classmethod
    def at(cls, until: datetime | None, now: datetime) -> Timeout:
        """Return the frame of a timeout until ``until`` as seen at ``now``."""
        if until is None:
            return cls(None)
        return cls(until, round(max((until - now).total_seconds(), 0.0), 3))


@dataclass(frozen=True)
class RestrictionsChanged:
    """Moderators only: someone was banned, timed out or released; reload the list."""

    type: Literal["restrictions"] = "restrictions"


@dataclass(frozen=True)
class Settings:
    """The channel's slow mode changed (seconds between posts, 0: off)."""

    slow_mode: int
    type: Literal["settings"] = "settings"


@dataclass(frozen=True)
class Review:
    """Moderators only: a message was held for review (``id`` is its queue id)."""

    id: int
    author: str
    body: str
    sent_at: datetime
    reason: str
    type: Literal["review"] = "review"


@dataclass(frozen=True)
class Reviewed:
    """Moderators only: held message ``id`` was approved or rejected."""

    id: int
    outcome: Literal["approved", "rejected"]
    type: Literal["reviewed"] = "reviewed"


# Both ways: the server's heartbeat and a client's, and their answers.


@dataclass(frozen=True)
class Ping:
    """A heartbeat; the server sends one every ``chat_heartbeat_seconds`` and answers one."""

    type: Literal["ping"] = "ping"


@dataclass(frozen=True)
class Pong:
    """The answer to a ping (the server ignores a client's)."""

    type: Literal["pong"] = "pong"


# Client to server.


@dataclass(frozen=True)
class Post:
    """Post ``body``; ``nonce`` makes a resent post safe.

    Both are as the client sent them: ``service.post`` checks them, as it checks a REST post.
    """

    body: object
    nonce: object = None
    type: Literal["post"] = "post"

    @property
    def echo(self) -> str | None:
        """Return the nonce to repeat in the answer (None if it is not a plausible one)."""
        nonce = self.nonce
        return nonce if isinstance(nonce, str) and len(nonce) <= NONCE_MAX else None


ServerFrame = (
    Hello
    | Message
    | Resumed
    | Reset
    | Deleted
    | Purged
    | Error
    | Held
    | Timeout
    | RestrictionsChanged
    | Settings
    | Review
    | Reviewed
    | Ping
    | Pong
)
ClientFrame = Post | Ping | Pong
# What a channel's room fans out from the bus (``hub.ChatEvent``); the rest never leaves a process.
Fanout = Message | Deleted | Purged | Review | Reviewed


@dataclass(frozen=True)
class Close:
    """Not a frame: the client's input ends the socket with ``code`` (``reason`` says why)."""

    code: int
    reason: str


# The wire.


_FIELDS: dict[type[Any], tuple[str, ...]] = {}


def _fields(kind: type[Any]) -> tuple[str, ...]:
    """Return a frame class's field names after ``type`` (which the JSON puts first)."""
    names = _FIELDS.get(kind)
    if names is None:  # once per class: encode is on the fan-out path
        names = _FIELDS[kind] = tuple(f.name for f in dataclasses.fields(kind) if f.name != "type")
    return names


def _json_value(value: object) -> object:
    """Return the JSON form of a field json cannot write itself (datetimes, nested records)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: getattr(value, name) for name in _fields(type(value))}
    raise TypeError(f"{type(value).__name__} is not part of a chat frame")


def encode(frame: ServerFrame) -> str:
    """Return the JSON text a socket receives for ``frame`` (compact, UTF-8 as is)."""
    data: dict[str, object] = {"type": frame.type}
    omitted: frozenset[str] = getattr(frame, "omitted_when_none", frozenset())
    for name in _fields(type(frame)):
        value = getattr(frame, name)
        if value is not None or name not in omitted:
            data[name] = value
    return _ENCODER.encode(data)


# Built once: ``json.dumps`` with options would build an encoder for every frame.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_json_value)


_CLIENT_TYPES: dict[str, ClientFrame] = {"ping": Ping(), "pong": Pong()}


def parse(text: str | None, max_bytes: int) -> ClientFrame | Error | Close:
    """Read a client's frame (None: a binary one). Never raises.

    Returns the frame; or the ``Error`` frame to answer (the socket stays open) for a binary
    frame, one over ``max_bytes``, bad JSON, or a JSON value that is not a frame of a known
    type; or ``Close`` (1009) for a frame over ``HARD_LIMIT_FACTOR`` times ``max_bytes``.
    """
    if text is None:
        return Error.of(InvalidFrame("only text frames are accepted"))
    size = len(text) if text.isascii() else len(text.encode(errors="surrogatepass"))
    if size > max_bytes * HARD_LIMIT_FACTOR:
        return Close(TOO_BIG, "frame too large")
    if size > max_bytes:
        return Error.of(FrameTooLarge(f"frames are limited to {max_bytes} bytes"))
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        return Error.of(InvalidJson("frame is not valid JSON"))
    if not isinstance(data, dict) or "type" not in data:
        return Error.of(InvalidFrame('a frame is a JSON object with a "type"'))
    kind = data["type"]
    if kind == "post":
        return Post(data.get("body"), data.get("nonce"))
    known = _CLIENT_TYPES.get(kind) if isinstance(kind, str) else None
    if known is None:
        return Error.of(UnknownType(f"unknown frame type {str(kind)[:40]!r}"))
    return known

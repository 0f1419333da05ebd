"""Server-rendered pages: the front door, channel pages, sign-in and the studio.

The home page (``/``) and a channel's page (``/c/SLUG``) are rendered with their first data
(channels on air, recent VODs, the offline slate) so they read without scripts; their scripts
then keep them current from the public APIs. The studio pages only render a template; their
scripts call the APIs, which authorize every read and change. A channel the caller may not see
is the 404 page, like an unknown one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from stagecast import __version__
from stagecast.auth.deps import CoreDep, MaybeAccountDep
from stagecast.channels.service import get_channel
from stagecast.live.runtime import LiveDep
from stagecast.live.states import ON_AIR
from stagecast.studio.runtime import StudioDep
from stagecast.vod import library
from stagecast.vod.schemas import PublicVodOut
from stagecast.web import directory
from stagecast.web.front import directory_out

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

templates = Jinja2Templates(directory=str(TEMPLATES))
router = APIRouter(include_in_schema=False)

AFTER_SIGN_IN = "/studio"
_MAX_NEXT = 2048
# Backslashes (browsers read them as slashes), whitespace and control characters (URL parsers
# drop tabs and newlines, so "/\t/host" becomes "//host"): none belongs in a path we hand on.
_UNSAFE_IN_NEXT = re.compile(r"[\\\x00-\x20\x7f]")


HOME_LIVE = 24  # channels on air on the home page (the API pages through the rest)
HOME_VODS = 12
SLATE_VODS = 6


def render(
    request: Request,
    name: str,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    """Render template ``name`` with the common context."""
    return templates.TemplateResponse(
        request,
        name,
        {"version": __version__, **context},
        status_code=status_code,
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


@router.get("/", response_class=HTMLResponse)
async def home(request: Request, core: CoreDep, studio: StudioDep) -> HTMLResponse:
    """The public home page: channels on air now, then the recent public VODs."""
    on_air = await directory.public_channels(
        core.db, core.secret_key, limit=HOME_LIVE, token=None, live_only=True
    )
    vods = await library.public_page(core.db, core.secret_key, limit=HOME_VODS, token=None)
    return render(
        request,
        "home.html",
        title="Live now",
        live=(await directory_out(on_air, studio)).items,
        vods=[PublicVodOut.of(v) for v in vods.items],
    )


@router.get("/favicon.ico", include_in_schema=False)
async def favicon() -> RedirectResponse:
    """Point browsers that ask for /favicon.ico at the SVG icon."""
    return RedirectResponse("/static/favicon.svg", status_code=308)


def _without_dot_segments(path: str) -> str:
    """Return ``path`` with ``.`` and ``..`` segments resolved (RFC 3986 §5.2.4), as browsers do.

    Percent-encoded dots count as dots (browsers treat ``%2e`` like ``.`` in a segment).
    """
    out: list[str] = []
    segments = path.split("/")[1:]
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        dots = unquote(segment) if "%" in segment else segment
        if dots == ".":
            if last:
                out.append("")
        elif dots == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(segment)
    return "/" + "/".join(out)


def safe_next(raw: str | None) -> str:
    """Return where to go after sign-in: ``raw`` if it is a path of this site, else /studio.

    The path is returned with its dot segments resolved, so the browser goes exactly where it
    was checked to go: never to a protocol-relative ``//host`` (also reached through
    ``/..//host``, ``/%2e%2e//host``, ``/a/..//host``) or a ``/\\host``.
    """
    if not raw or len(raw) > _MAX_NEXT or not raw.startswith("/") or _UNSAFE_IN_NEXT.search(raw):
        return AFTER_SIGN_IN
    cut = min((i for i in (raw.find("?"), raw.find("#")) if i >= 0), default=len(raw))
    path = _without_dot_segments(raw[:cut])
    if path.startswith("//"):
        return AFTER_SIGN_IN
    return path + raw[cut:]


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request) -> HTMLResponse:
    """The sign-in form; ``next`` (a path of this site) is where it leads afterwards."""
    after = safe_next(request.query_params.get("next"))
    return render(request, "login.html", title="Sign in", after=after)


@router.get("/studio", response_class=HTMLResponse)
async def studio_page(request: Request) -> HTMLResponse:
    """The broadcaster's channel list and the form that creates a channel."""
    return render(request, "studio.html", title="Studio", nav="channels")


@router.get("/studio/library", response_class=HTMLResponse)
async def library_page(request: Request) -> HTMLResponse:
    """The VOD library: filters, keyset-paged list, edit, delete, play."""
    return render(request, "library.html", title="VOD library", nav="library")


@router.get("/c/{slug}", response_class=HTMLResponse)
async def viewer_page(
    request: Request,
    slug: str,
    core: CoreDep,
    live: LiveDep,
    account: MaybeAccountDep,
    token: Annotated[str | None, Query(max_length=1024)] = None,
) -> HTMLResponse:
    """The channel page: player and chat on air, else the offline slate (what comes next, the
    recent VODs). An unknown channel, or one the caller may not watch, is the 404 page."""
    found = await live.lookups.watchable(slug, token, account)
    channel = await get_channel(core.db, found.slug)
    vods = await library.channel_page(
        core.db,
        found.channel_id,
        found.visibility == "public",
        core.secret_key,
        limit=SLATE_VODS,
        token=None,
    )
    return render(
        request,
        "viewer.html",
        title=channel.title,
        slug=found.slug,
        channel=channel,
        on_air=found.session_id is not None and found.state in ON_AIR,
        vods=[PublicVodOut.of(v) for v in vods.items],
    )


@router.get("/studio/channels/{slug}", response_class=HTMLResponse)
async def channel_page(request: Request, slug: str) -> HTMLResponse:
    """One channel's "Go live" panel (server, stream key), settings, chat and moderators."""
    return render(request, "channel.html", title=f"{slug} · Settings", slug=slug, nav="channels")


@router.get("/studio/channels/{slug}/live", response_class=HTMLResponse)
async def dashboard_page(request: Request, slug: str) -> HTMLResponse:
    """The live dashboard: preview, health, charts from the event stream, chat, history."""
    return render(request, "dashboard.html", title=f"{slug} · Dashboard", slug=slug, nav="channels")

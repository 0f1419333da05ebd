"""Server-rendered pages: sign-in and the studio. Data comes from the JSON API in the browser.

The page handlers only render a template; the scripts call the APIs, which authorize every
read and change. A page for a channel the caller may not see shows the API's 404 in place.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from stagecast import __version__

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

templates = Jinja2Templates(directory=str(TEMPLATES))
router = APIRouter(include_in_schema=False)

AFTER_SIGN_IN = "/studio"
_MAX_NEXT = 2048
# Backslashes (browsers read them as slashes), whitespace and control characters (URL parsers
# drop tabs and newlines, so "/\t/host" becomes "//host"): none belongs in a path we hand on.
_UNSAFE_IN_NEXT = re.compile(r"[\\\x00-\x20\x7f]")


def render(request: Request, name: str, **context: Any) -> HTMLResponse:
    """Render template ``name`` with the common context."""
    return templates.TemplateResponse(
        request, name, {"version": __version__, **context}, headers={"Cache-Control": "no-store"}
    )


@router.get("/")
async def home() -> RedirectResponse:
    """Send visitors to the studio."""
    return RedirectResponse("/studio", status_code=303)


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
async def viewer_page(request: Request, slug: str) -> HTMLResponse:
    """The viewer page: player, live state, chat. Access is checked by the APIs it calls."""
    return render(request, "viewer.html", title=slug, slug=slug)


@router.get("/studio/channels/{slug}", response_class=HTMLResponse)
async def channel_page(request: Request, slug: str) -> HTMLResponse:
    """One channel's "Go live" panel (server, stream key), settings, chat and moderators."""
    return render(request, "channel.html", title=f"{slug} · Settings", slug=slug, nav="channels")


@router.get("/studio/channels/{slug}/live", response_class=HTMLResponse)
async def dashboard_page(request: Request, slug: str) -> HTMLResponse:
    """The live dashboard: preview, health, charts from the event stream, chat, history."""
    return render(request, "dashboard.html", title=f"{slug} · Dashboard", slug=slug, nav="channels")

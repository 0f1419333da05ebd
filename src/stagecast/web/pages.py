"""Server-rendered pages: sign-in and the studio. Data comes from the JSON API in the browser.

The page handlers only render a template; the scripts call the APIs, which authorize every
read and change. A page for a channel the caller may not see shows the API's 404 in place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from stagecast import __version__

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

templates = Jinja2Templates(directory=str(TEMPLATES))
router = APIRouter(include_in_schema=False)


def render(request: Request, name: str, **context: Any) -> HTMLResponse:
    """Render template ``name`` with the common context."""
    return templates.TemplateResponse(
        request, name, {"version": __version__, **context}, headers={"Cache-Control": "no-store"}
    )


@router.get("/")
async def home() -> RedirectResponse:
    """Send visitors to the studio."""
    return RedirectResponse("/studio", status_code=303)


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request) -> HTMLResponse:
    """The sign-in form."""
    return render(request, "login.html", title="Sign in")


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

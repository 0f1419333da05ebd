"""Account pages: sign-up, the account page (password, sessions), the admins' invites.

Like every page they only render a template; the scripts call the JSON API, which checks the
caller. The sign-up page is rendered for the registration mode so that a closed server says
so before anyone fills a form.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from stagecast.auth.deps import CoreDep
from stagecast.web.pages import render, safe_next

router = APIRouter(include_in_schema=False)

_MAX_INVITE = 200  # the longest invite code the register API takes


@router.get("/signup", response_class=HTMLResponse)
async def signup_page(request: Request, core: CoreDep) -> HTMLResponse:
    """The sign-up form for the registration mode; ``invite`` pre-fills a code from a link."""
    raw_next = request.query_params.get("next")
    invite = request.query_params.get("invite", "")[:_MAX_INVITE]
    return render(
        request,
        "signup.html",
        title="Create an account",
        mode=core.settings.registration,
        invite=invite,
        after=safe_next(raw_next) if raw_next else "",
    )


@router.get("/account", response_class=HTMLResponse)
async def account_page(request: Request) -> HTMLResponse:
    """The signed-in account: name and role, change password, sign out other sessions."""
    return render(request, "account.html", title="Your account")


@router.get("/studio/invites", response_class=HTMLResponse)
async def invites_page(request: Request) -> HTMLResponse:
    """Admins make, list and revoke invite codes (with a sign-up link to hand on)."""
    return render(request, "invites.html", title="Invites", nav="invites")

"""Render every error in one place: ``{"error": {"code": ..., "message": ...}}``, or a page.

A browser asking for a page (a GET or HEAD that accepts ``text/html``, outside ``/api/`` and
the media paths) gets the same status, message and headers as an HTML error page
(``error.html``); every other client gets the JSON body.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import iter_route_contexts
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException
from starlette.routing import compile_path

from stagecast.db.retry import sqlstate_class
from stagecast.errors import StagecastError
from stagecast.web.pages import render

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    422: "invalid",
    429: "rate_limited",
}


_HEADINGS = {
    400: "Bad request",
    401: "Please sign in",
    403: "Not allowed",
    404: "Page not found",
    405: "Not allowed",
    409: "Conflict",
    413: "Too large",
    422: "That did not work",
    429: "Too many requests",
    503: "Please try again shortly",
    504: "Please try again shortly",
}
_NOT_PAGES = ("/api/", "/hls/", "/static/", "/ingest/")


def wants_page(request: Request) -> bool:
    """Return True if ``request`` is a browser asking for a page (not an API or media call)."""
    if request.method not in ("GET", "HEAD") or request.url.path.startswith(_NOT_PAGES):
        return False
    return "text/html" in request.headers.get("accept", "")


def _page(request: Request, status: int, message: str, headers: dict[str, str]) -> Response:
    heading = _HEADINGS.get(status, "Something went wrong" if status >= 500 else "Error")
    return render(
        request,
        "error.html",
        status_code=status,
        headers=headers,
        title=heading,
        heading=heading,
        status=status,
        message=message[:1:].upper() + message[1:],
    )


def respond(
    request: Request,
    status: int,
    code: str,
    message: str,
    *,
    retry_after: float | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """Answer an error as a page for a browser's page request, else as JSON."""
    if not wants_page(request):
        return error_response(status, code, message, retry_after=retry_after, headers=headers)
    all_headers = dict(headers or {})
    if retry_after is not None:
        all_headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return _page(request, status, message, all_headers)


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    retry_after: float | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """Build the JSON error response, with ``Retry-After`` in whole seconds where given."""
    all_headers = dict(headers or {})
    if retry_after is not None:
        all_headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=all_headers
    )


@functools.lru_cache(maxsize=512)
def _path_pattern(path_format: str) -> re.Pattern[str]:
    return compile_path(path_format)[0]


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Return every method some route of ``app`` answers on ``path``, sorted.

    Starlette's 405 names only the first route whose path matched; several routes (one per
    method) often share a path.
    """
    found: set[str] = set()
    for context in iter_route_contexts(app.routes):
        if (
            context.path_format
            and context.methods
            and _path_pattern(context.path_format).match(path)
        ):
            found.update(context.methods)
    return sorted(found)


def _describe(errors: list[Any]) -> str:
    parts = []
    for error in errors[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install(app: FastAPI) -> None:
    """Register the handlers that turn exceptions into JSON errors."""

    @app.exception_handler(StagecastError)
    async def _domain(request: Request, exc: StagecastError) -> Response:
        if exc.status >= 500:
            log.warning(
                "%s %s -> %d %s: %s",
                request.method,
                request.url.path,
                exc.status,
                exc.code,
                exc.message,
            )
        return respond(request, exc.status, exc.code, exc.message, retry_after=exc.retry_after)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return respond(request, 422, "invalid", _describe(list(exc.errors())))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, "error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request.app, request.url.path))
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = "there is nothing at this address"
        return respond(request, exc.status_code, code, message, headers=headers)

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> Response:
        # A value the database refused outright (SQLSTATE class 22, "data exception": a NUL
        # byte, an unrepresentable character, an out-of-range number) is the client's input.
        if sqlstate_class(exc) == "22":
            return respond(request, 422, "invalid", "a value in the request is not acceptable")
        log.exception("database error on %s %s", request.method, request.url.path)
        return respond(request, 500, "internal", "internal error")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal", "internal error")

"""The OpenAPI document: every error status each route can give, and nothing it cannot.

Routes name their own errors with ``responses=error_responses(...)`` from
``stagecast.errors`` (a 409 for a name taken, a 429 for a rate limit …). The errors that
follow from what a route is are added here, in one pass over the routes, so no route repeats
them:

- 401 when the route identifies its caller (a bad bearer token is refused on every such route);
- 403 when it identifies its caller and changes state (the CSRF check of cookie sessions), or
  needs an admin;
- 404 when its path names something (``{slug}``, ``{vod_id}`` …);
- 400 when it reads a JSON body (a body that does not parse) or takes a signed cursor
  (``cursor``, ``before``, ``after``: a tampered one);
- 503 and 504 on every API and ingest route (the database, Redis and their deadlines).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts

from stagecast.auth.deps import SAFE_METHODS, get_caller, require_admin
from stagecast.errors import error_responses

_CURSOR_PARAMS = frozenset({"cursor", "before", "after"})


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _calls(dependency)


def implied_errors(route: APIRoute, path: str, method: str) -> list[int]:
    """Return the error statuses ``route`` gives for ``method`` because of what it is."""
    calls = set(_calls(route.dependant))
    found = []
    if get_caller in calls:
        found.append(401)
        if method not in SAFE_METHODS or require_admin in calls:
            found.append(403)
    if route.param_convertors:
        found.append(404)
    cursors = {p.alias for p in route.dependant.query_params} & _CURSOR_PARAMS
    if route.body_field is not None or cursors:
        found.append(400)
    if path.startswith(("/api/", "/ingest/")):
        found += [503, 504]
    return found


def document(app: FastAPI) -> dict[str, Any]:
    """Build the OpenAPI document of ``app`` with the implied errors of every operation."""
    schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
    for context in iter_route_contexts(app.routes):
        route, path = context.original_route, context.path_format
        if not isinstance(route, APIRoute) or not route.include_in_schema or path is None:
            continue
        for method in route.methods or ():
            operation = schema["paths"].get(path, {}).get(method.lower())
            if operation is None:
                continue
            for status, entry in error_responses(*implied_errors(route, path, method)).items():
                operation["responses"].setdefault(str(status), entry)
    return schema


def install(app: FastAPI) -> None:
    """Serve ``document(app)`` (built once, on first request) as the app's OpenAPI."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

"""The OpenAPI document names the errors routes give; a 405 names every method of its path."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from tests.conftest import RunningServer


async def test_a_405_allows_every_method_of_the_path(live_server: RunningServer) -> None:
    """DELETE on a path with GET and PATCH answers 405 with both in Allow, as JSON."""
    async with httpx.AsyncClient(base_url=live_server.url, timeout=10) as client:
        response = await client.delete("/api/v1/channels/some-show")
        users = await client.put("/api/v1/users")
    assert response.status_code == 405
    assert {m.strip() for m in response.headers["allow"].split(",")} == {"GET", "PATCH"}
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert {m.strip() for m in users.headers["allow"].split(",")} == {"GET", "POST"}


async def test_every_operation_documents_the_errors_it_implies(app: FastAPI) -> None:
    """Identified callers: 401; changes: 403 (CSRF); path ids: 404; bodies: 400; all: 503/504;
    and a route's own errors (409 for a taken slug, 429 for a rate limit) beside them."""
    paths = app.openapi()["paths"]

    def codes(path: str, method: str) -> set[str]:
        return set(paths[path][method]["responses"])

    assert codes("/api/v1/channels", "post") >= {"201", "400", "401", "403", "409", "422", "503"}
    assert codes("/api/v1/channels/{slug}", "get") >= {"200", "401", "404", "503", "504"}
    assert "403" not in codes("/api/v1/channels/{slug}", "get")
    assert codes("/api/v1/auth/login", "post") >= {"400", "401", "429"}
    assert "400" in codes("/api/v1/studio/channels/{slug}/sessions", "get")  # its cursor
    error = paths["/api/v1/channels"]["post"]["responses"]["409"]["content"]["application/json"]
    assert error["schema"]["required"] == ["error"]

"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from stagecast.auth.deps import CoreDep
from stagecast.db import Kind
from stagecast.errors import StagecastError

router = APIRouter(tags=["health"])

_READY_DEADLINE = 2.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Tell that the process is up (no dependency is checked)."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={503: {"description": "Not ready: the body names the check that failed"}},
)
async def readyz(core: CoreDep) -> JSONResponse:
    """Tell whether the database answers within its deadline and the bus is connected."""

    async def ping(conn: AsyncConnection) -> None:
        await conn.execute(text("SELECT 1"))

    checks: dict[str, str] = {}
    try:
        await core.db.run(ping, kind=Kind.READ, name="readyz", deadline=_READY_DEADLINE)
        checks["database"] = "ok"
    except StagecastError as exc:
        checks["database"] = exc.code
    checks["bus"] = "ok" if core.bus.healthy else "unavailable"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
        headers={} if ready else {"Retry-After": "1"},
    )

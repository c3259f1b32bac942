"""Operational endpoints: liveness, database health and metrics (no auth, no rate limit)."""

import asyncio
import time
from typing import Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

from fasttrack import __version__
from fasttrack.core.db import Database
from fasttrack.core.errors import ServiceUnavailable, problem_responses
from fasttrack.core.metrics import METRICS_MEDIA_TYPE, Metrics

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str
    uptime_s: float


class DatabaseHealth(BaseModel):
    status: Literal["ok"] = "ok"
    database: Literal["ok"] = "ok"
    latency_ms: float


@router.get("/health", response_model=Health)
async def get_health(request: Request) -> Response:
    """Liveness: the process is up and serving."""
    uptime = time.monotonic() - request.app.state.started_at
    # A plain JSONResponse: probes call this many times a second, and running our own
    # three fields through the response model was a quarter of the request's cost.
    return JSONResponse({"status": "ok", "version": __version__, "uptime_s": round(uptime, 3)})


@router.get("/health/db", response_model=DatabaseHealth, responses=problem_responses(503))
async def get_database_health(request: Request) -> DatabaseHealth:
    """Readiness: the database answers a query within the configured timeout
    (`DATABASE_TIMEOUT`, 2 s by default); 503 `service_unavailable` otherwise."""
    database: Database = request.app.state.database
    started = time.perf_counter()
    try:
        async with asyncio.timeout(request.app.state.settings.database_timeout):
            async with database.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
    except Exception as exc:
        raise ServiceUnavailable(
            "The database did not answer in time", headers={"Retry-After": "1"}
        ) from exc
    return DatabaseHealth(latency_ms=round((time.perf_counter() - started) * 1000, 2))


@router.get("/metrics", include_in_schema=False)
async def get_metrics(request: Request) -> Response:
    """Prometheus text exposition of this process's metrics."""
    metrics: Metrics = request.app.state.metrics
    return Response(metrics.render(), media_type=METRICS_MEDIA_TYPE)

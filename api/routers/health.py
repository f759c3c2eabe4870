"""Liveness and readiness (``/v1/health``), for load balancers and ``shopflow api`` supervisors."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse

from shopflow.api.dependencies import EdgeDep
from shopflow.api.schemas import Health

router = APIRouter(prefix="/v1/health", tags=["health"])


@router.get("", response_model=Health)
async def live() -> Health:
    """The process is up and serving."""
    return Health(status="ok")


@router.get("/ready", response_model=Health, responses={503: {"model": Health, "description": "A dependency is down."}})
async def ready(edge: EdgeDep) -> JSONResponse:
    """Each backing service answers: PostgreSQL, Redis, Kafka (metadata)."""

    async def postgres() -> None:
        await edge.pool.fetchval("SELECT 1")

    async def redis() -> None:
        await edge.redis.ping()

    async def kafka() -> None:
        if not await asyncio.to_thread(edge.producer.ready, 2.0):
            raise ConnectionError("no metadata from the broker")

    names = ("postgres", "redis", "kafka")
    results = await asyncio.gather(
        *(asyncio.wait_for(check(), 3.0) for check in (postgres, redis, kafka)), return_exceptions=True)
    checks = {name: "ok" if not isinstance(r, BaseException) else f"down: {r!r}"
              for name, r in zip(names, results, strict=True)}
    healthy = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if healthy else "degraded", checks=checks)
    return JSONResponse(body.model_dump(), status.HTTP_200_OK if healthy else status.HTTP_503_SERVICE_UNAVAILABLE)

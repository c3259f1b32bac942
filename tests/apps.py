"""Extra applications for tests that need settings the shared app does not have."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from fasttrack.core.config import Settings
from fasttrack.main import create_app
from fasttrack.ratelimit.limiter import KEY_PREFIX

CLIENT_IP = "203.0.113.7"


async def forget_shared_rate_limits(redis_url: str) -> None:
    """Delete the limiter's counters from Redis, where they outlive apps and test runs."""
    from redis.asyncio import Redis  # noqa: PLC0415

    async with Redis.from_url(redis_url) as redis:
        keys = [key async for key in redis.scan_iter(match=f"{KEY_PREFIX}*")]
        if keys:
            await redis.delete(*keys)


@asynccontextmanager
async def running_app(settings: Settings, **overrides: Any) -> AsyncIterator[FastAPI]:
    """An app on the test database with `overrides` applied, its lifespan running.

    A rate-limited app on the test Redis starts from empty counters, as each test expects.
    """
    app_settings = settings.model_copy(update=overrides)
    test_redis = settings.redis_url
    if app_settings.rate_limit_enabled and test_redis and app_settings.redis_url == test_redis:
        await forget_shared_rate_limits(test_redis)
    app = create_app(app_settings)
    async with LifespanManager(app):
        yield app


def client_for(
    app: FastAPI, *, client_ip: str = CLIENT_IP, base_url: str = "http://test"
) -> AsyncClient:
    """A client whose requests come from `client_ip`, as uvicorn would report it."""
    return AsyncClient(
        transport=ASGITransport(app=app, client=(client_ip, 50000)), base_url=base_url
    )

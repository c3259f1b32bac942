"""The application factory: middleware, routers, error handlers and lifespan."""

import asyncio
import contextlib
import gc
import logging
import signal
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any, Final

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from fasttrack import __version__
from fasttrack.auth import service as auth_service
from fasttrack.auth.router import router as auth_router
from fasttrack.auth.tokens import TokenService
from fasttrack.comments.router import router as comments_router
from fasttrack.core.body_limit import BodyLimitMiddleware
from fasttrack.core.cache import Caches
from fasttrack.core.config import Settings
from fasttrack.core.db import Database, create_database
from fasttrack.core.errors import install_error_handlers, problem_responses
from fasttrack.core.freshness import create_freshness
from fasttrack.core.logging import configure_logging
from fasttrack.core.metrics import Metrics, MetricsMiddleware
from fasttrack.core.middleware import RequestContextMiddleware, SecurityHeadersMiddleware
from fasttrack.core.pagination import CursorCodec
from fasttrack.core.routing import RoutePaths
from fasttrack.core.security import PasswordHasher
from fasttrack.notifications.broker import create_broker
from fasttrack.notifications.email import create_email_sender
from fasttrack.notifications.hub import CloseCode, Hub
from fasttrack.notifications.router import router as notifications_router
from fasttrack.notifications.ws import router as ws_router
from fasttrack.ops.docs import DOCS_PREFIXES, install_offline_docs
from fasttrack.ops.router import router as ops_router
from fasttrack.projects.router import router as projects_router
from fasttrack.ratelimit.keys import ClientKeys
from fasttrack.ratelimit.limiter import RateLimiter, per_window
from fasttrack.ratelimit.middleware import RateLimitMiddleware
from fasttrack.tasks import counts as task_counts
from fasttrack.tasks.router import router as tasks_router
from fasttrack.users.router import router as users_router

API_PREFIX: Final = "/api/v1"
PURGE_INTERVAL_SECONDS: Final = 3600.0
# How long a stop signal waits for the open WebSockets to close with 1001.
SOCKETS_CLOSE_SECONDS: Final = 10.0
# Entries of each validated cache (principals, project access, tasks; pages of tasks a
# tenth of it): a few MiB when full.
CACHE_ENTRIES: Final = 10_000
# Operations and docs are never rate-limited (SPEC §5).
RATE_LIMIT_EXEMPT: Final = ("/health", "/metrics", "/openapi.json", *DOCS_PREFIXES)
# The stricter per-address limit: where passwords and refresh tokens are guessed.
AUTH_LIMITED_PATHS: Final = tuple(
    f"{API_PREFIX}/auth/{name}" for name in ("login", "register", "token", "refresh")
)
CORS_ALLOW_HEADERS: Final = ("Authorization", "Content-Type", "If-Match", "X-Request-ID")
CORS_EXPOSE_HEADERS: Final = (
    "X-Request-ID",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "Retry-After",
    "ETag",
    "Location",
)

logger = logging.getLogger("fasttrack")


async def _purge_revocations(database: Database) -> None:
    # A database that is down at start-up must not keep the service from starting:
    # /health/db then reports it, and the next purge catches up.
    try:
        async with database.session(write=True) as session:
            purged = await auth_service.purge_expired(session)
    except Exception:
        logger.exception("purging expired revocations failed")
    else:
        logger.info("purged %d expired revocation entries", purged)


async def _repair_task_counts(database: Database) -> None:
    # Like the purge, a database that is down must not keep the service from starting.
    try:
        async with database.session(write=True) as session:
            await task_counts.repair_task_counts(session)
    except Exception:
        logger.exception("repairing drifted task counts failed")


async def _purge_periodically(database: Database) -> None:
    while True:
        await asyncio.sleep(PURGE_INTERVAL_SECONDS)
        await _purge_revocations(database)


@contextlib.contextmanager
def _sockets_go_away_on_signals(hub: Hub) -> Iterator[None]:
    """Close every WebSocket with 1001 as soon as the process is told to stop.

    Uvicorn closes open WebSockets itself (with 1012) as soon as it hears the signal, so
    the hub closes them first and hands the signal on only once they are closed (or
    SOCKETS_CLOSE_SECONDS have passed).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {}
    closing: set[asyncio.Task[None]] = set()

    def hand_on(signum: int, frame: FrameType | None) -> None:
        handler = previous[signum]
        if callable(handler):
            handler(signum, frame)
        else:
            signal.signal(signum, handler)
            signal.raise_signal(signum)

    async def close_then_hand_on(signum: int, frame: FrameType | None) -> None:
        try:
            hub.close_all(CloseCode.GOING_AWAY, "Server shutting down")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SOCKETS_CLOSE_SECONDS):
                    await hub.all_closed()
        finally:
            hand_on(signum, frame)

    def start_closing(signum: int, frame: FrameType | None) -> None:
        task = loop.create_task(close_then_hand_on(signum, frame))
        closing.add(task)
        task.add_done_callback(closing.discard)

    def handle(signum: int, frame: FrameType | None) -> None:
        if closing:  # a second signal: stop at once
            hand_on(signum, frame)
            return
        loop.call_soon_threadsafe(start_closing, signum, frame)

    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        previous[stop_signal] = signal.signal(stop_signal, handle)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    database: Database = app.state.database
    hub: Hub = app.state.hub
    app.state.started_at = time.monotonic()
    await _purge_revocations(database)
    await _repair_task_counts(database)
    purger = asyncio.create_task(_purge_periodically(database), name="revocation-purge")
    await hub.start()
    # Everything built so far (modules, schemas, mappers, routes: ~10^5 objects) lives as
    # long as the process. Left to the cyclic collector, each full collection walks them
    # all, a 30 ms pause for every request in flight; frozen, they are never walked again.
    gc.collect()
    gc.freeze()
    try:
        with _sockets_go_away_on_signals(hub):
            yield
    finally:
        await hub.stop()
        purger.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await purger
        await database.dispose()
        app.state.hasher.close()
        if app.state.rate_limiter is not None:
            await app.state.rate_limiter.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build a fully wired application; nothing is read from the environment before this."""
    settings = settings or Settings()
    configure_logging(settings)
    app = FastAPI(
        title="fasttrack",
        version=__version__,
        summary="Team task tracking: projects, tasks, comments and real-time notifications.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.database = create_database(settings)
    app.state.hasher = PasswordHasher(
        rounds=settings.bcrypt_rounds, workers=settings.password_hash_workers
    )
    app.state.tokens = TokenService(settings)
    app.state.cursor_codec = CursorCodec(settings.secret_key.get_secret_value().encode())
    app.state.email_sender = create_email_sender(settings)
    app.state.metrics = Metrics()
    freshness = create_freshness(
        database_url=settings.database_url, redis_url=settings.redis_url, workers=settings.workers
    )
    app.state.caches = caches = Caches(freshness, ttl=settings.cache_ttl)
    app.state.principals = caches.new(max_entries=CACHE_ENTRIES)
    app.state.project_access = caches.new(max_entries=CACHE_ENTRIES)
    app.state.task_cache = caches.new(max_entries=CACHE_ENTRIES)
    # A page holds up to 100 tasks.
    app.state.task_pages = caches.new(max_entries=CACHE_ENTRIES // 10)
    app.state.hub = Hub(
        create_broker(settings.redis_url), caches=caches, observer=app.state.metrics
    )
    app.state.database.publisher = app.state.hub
    app.state.rate_limiter = None
    app.state.route_paths = RoutePaths(app)

    install_error_handlers(app)
    # Middleware added first runs innermost. The limiter sits inside CORS, so a 429 still
    # carries the CORS headers a browser needs to read it, and preflights are not counted.
    if settings.rate_limit_enabled:
        app.state.rate_limiter = RateLimiter(redis_url=settings.redis_url)
        app.add_middleware(
            RateLimitMiddleware,
            limiter=app.state.rate_limiter,
            keys=ClientKeys(app.state.tokens),
            default_limit=per_window(
                settings.rate_limit_requests, settings.rate_limit_window, name="default"
            ),
            auth_limit=per_window(
                settings.auth_rate_limit_requests, settings.rate_limit_window, name="auth"
            ),
            auth_paths=AUTH_LIMITED_PATHS,
            exempt_prefixes=RATE_LIMIT_EXEMPT,
            metrics=app.state.metrics,
        )
    app.add_middleware(BodyLimitMiddleware)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=("GET", "POST", "PATCH", "DELETE"),
            allow_headers=CORS_ALLOW_HEADERS,
            expose_headers=CORS_EXPOSE_HEADERS,
            max_age=600,
        )
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    # Added last = outermost: security headers wrap even the 500 rendered by the
    # request-context middleware.
    app.add_middleware(RequestContextMiddleware)
    app.add_middleware(SecurityHeadersMiddleware, docs_prefixes=DOCS_PREFIXES)

    app.include_router(ops_router)
    app.include_router(ws_router)
    # Each domain router is included directly rather than through one /api/v1 router:
    # FastAPI matches nested routers level by level, twice per request, which cost a
    # measurable share of every request. Tasks precede users so that /users/me/tasks
    # matches before /users/{user_id}.
    api_routers = (
        auth_router,
        tasks_router,
        users_router,
        projects_router,
        comments_router,
        notifications_router,
    )
    for router in api_routers:
        app.include_router(router, prefix=API_PREFIX, responses=problem_responses(429))
    install_offline_docs(app)
    return app

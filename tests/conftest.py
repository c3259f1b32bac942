"""Shared fixtures: one app and database per test session, clean rows after every test."""

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from pydantic import SecretStr
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

import fasttrack.models  # noqa: F401  (every table on the metadata)
from fasttrack.core.config import Environment, Settings
from fasttrack.core.db import execute
from fasttrack.main import create_app
from fasttrack.notifications.hub import CloseCode
from tests.database import migrate_afresh
from tests.factories import TEST_SECRET, RecordingEmailSender, swapped_email_sender


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    return url or f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db')}/test.db"


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return Settings(
        _env_file=None,
        environment=Environment.test,
        secret_key=SecretStr(TEST_SECRET),
        database_url=database_url,
        redis_url=os.environ.get("TEST_REDIS_URL"),
        bcrypt_rounds=4,
        log_level="WARNING",
        # The shared app is not throttled; tests/ratelimit builds limited apps of its own.
        rate_limit_enabled=False,
    )


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    # The schema the migrations make, with their triggers, not `create_all`'s.
    await asyncio.to_thread(migrate_afresh, settings)
    application = create_app(settings)
    async with LifespanManager(application):  # ASGITransport alone never runs the lifespan
        yield application


@pytest.fixture(autouse=True)
async def _clean_rows(app: FastAPI) -> AsyncIterator[None]:
    yield
    # A socket a failed test left open must not receive the next test's events.
    app.state.hub.close_all(CloseCode.GOING_AWAY, "Test finished")
    async with app.state.database.session(write=True) as db_session:
        for table in reversed(SQLModel.metadata.sorted_tables):
            await execute(db_session, table.delete())
        await db_session.commit()
    # Rows deleted behind the service's back: what the caches hold is stale now.
    app.state.caches.clear()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[AsyncClient]:
    transport = ASGITransport(app=app)
    async with AsyncClient(transport=transport, base_url="http://test/api/v1") as http:
        yield http


@pytest.fixture
async def session(app: FastAPI) -> AsyncIterator[AsyncSession]:
    # The readers, not the writer: on SQLite the writer is a single connection that a
    # test holding a session open would take away from the requests it makes. Readers
    # run in autocommit mode, so what a factory writes is committed at once.
    async with app.state.database.session(write=False) as db_session:
        yield db_session


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """`create_app` reconfigures logging process-wide: put the test session's back after."""
    names = ("fasttrack", "uvicorn", "uvicorn.error", "uvicorn.access")
    saved = {
        name: (logging.getLogger(name).handlers[:], logging.getLogger(name).level) for name in names
    }
    disabled = logging.getLogger("uvicorn.access").disabled
    yield
    for name, (handlers, level) in saved.items():
        logging.getLogger(name).handlers = handlers
        logging.getLogger(name).setLevel(level)
    logging.getLogger("uvicorn.access").disabled = disabled


AppFactory = Callable[..., AbstractAsyncContextManager[FastAPI]]


@pytest.fixture
def app_factory(settings: Settings, restore_logging: None) -> AppFactory:
    """Builds another application with `create_app`: the test settings plus overrides.

    With `lifespan=False` the start-up (revocation purge) is skipped, for settings that
    point at a database that cannot be reached.
    """

    @asynccontextmanager
    async def build(*, lifespan: bool = True, **overrides: Any) -> AsyncIterator[FastAPI]:
        application = create_app(Settings.model_validate({**settings.model_dump(), **overrides}))
        if lifespan:
            async with LifespanManager(application):
                yield application
            return
        try:
            yield application
        finally:
            await application.state.database.dispose()
            application.state.hasher.close()

    return build


@pytest.fixture(params=["SQLite in a missing directory", "PostgreSQL refusing connections"])
def unreachable_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL that no connection can be made to, failing fast like a dead server."""
    if request.param.startswith("SQLite"):
        return f"sqlite+aiosqlite:///{tmp_path}/missing/fasttrack.db"
    return "postgresql+asyncpg://postgres@127.0.0.1:1/fasttrack"


@pytest.fixture
def outbox(app: FastAPI) -> Iterator[RecordingEmailSender]:
    """The app sends e-mail to a recording EmailSender for the duration of a test."""
    sender = RecordingEmailSender()
    with swapped_email_sender(app, sender):
        yield sender

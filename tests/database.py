"""The test session's database: emptied, then built by the migrations."""

import asyncio
import os
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from fasttrack.core.config import Settings
from fasttrack.core.migrations import upgrade_to_head


async def _drop_everything(url: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        await connection.execute(text("DROP SCHEMA public CASCADE"))
        await connection.execute(text("CREATE SCHEMA public"))
    await engine.dispose()


def migrate_afresh(settings: Settings) -> None:
    """Empty the test database (PostgreSQL; a SQLite file is new) and migrate it to head."""
    if not settings.is_sqlite:
        asyncio.run(_drop_everything(settings.database_url))
    upgrade_to_head(settings)


async def _recreate_postgres_database(url: str) -> None:
    target = make_url(url)
    admin = create_async_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f'DROP DATABASE IF EXISTS "{target.database}"'))
        await connection.execute(text(f'CREATE DATABASE "{target.database}"'))
    await admin.dispose()


def database_of_its_own(tmp_path: Path, name: str) -> str:
    """A database for one test: a SQLite file by default; with TEST_DATABASE_URL, a new
    PostgreSQL database beside the test session's, named after it with `_name`."""
    test_url = os.environ.get("TEST_DATABASE_URL")
    if test_url is None:
        return f"sqlite+aiosqlite:///{tmp_path}/{name}.db"
    base = make_url(test_url)
    url = base.set(database=f"{base.database}_{name}").render_as_string(hide_password=False)
    asyncio.run(_recreate_postgres_database(url))
    return url

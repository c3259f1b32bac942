"""The test session's database: emptied, then built by the migrations."""

import asyncio

from sqlalchemy import text
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

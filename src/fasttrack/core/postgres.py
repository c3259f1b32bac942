"""asyncpg: one read statement on a pooled connection, for core.prepared."""

from typing import Any

import asyncpg
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection
from sqlalchemy.pool import PoolProxiedConnection


async def fetch(
    connection: PoolProxiedConnection, sql: str, arguments: tuple[Any, ...]
) -> list[Any]:
    """Run a read statement outside any transaction.

    asyncpg prepares the statement once per connection and keeps it in its own cache.
    """
    adapt_connection: AsyncAdapt_asyncpg_connection = connection.dbapi_connection  # type: ignore[assignment]
    driver: asyncpg.Connection = adapt_connection._connection
    try:
        rows: list[Any] = await driver.fetch(sql, *arguments)
    except Exception as error:
        adapt_connection._handle_exception(error)
    return rows

"""asyncpg: prepared statements on a pooled connection (core.prepared.Driver)."""

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection
from sqlalchemy.pool import PoolProxiedConnection


class AsyncpgDriver:
    """asyncpg prepares each statement once per connection and caches it itself."""

    async def fetch(
        self, connection: PoolProxiedConnection, sql: str, arguments: tuple[Any, ...]
    ) -> list[Any]:
        adapt_connection, driver = _unwrap(connection)
        try:
            rows: list[Any] = await driver.fetch(sql, *arguments)
        except Exception as error:
            adapt_connection._handle_exception(error)
        return rows

    async def join_transaction(self, connection: PoolProxiedConnection) -> None:
        # SQLAlchemy's adapter opens its transaction with the first statement it sends
        # itself; one sent past it would otherwise run, and commit, on its own.
        adapt_connection, _ = _unwrap(connection)
        if adapt_connection._transaction is None:
            start: Callable[[], Awaitable[None]] = adapt_connection._start_transaction
            try:
                await start()
            except Exception as error:
                adapt_connection._handle_exception(error)


def _unwrap(
    connection: PoolProxiedConnection,
) -> tuple[AsyncAdapt_asyncpg_connection, asyncpg.Connection]:
    adapt_connection: AsyncAdapt_asyncpg_connection = connection.dbapi_connection  # type: ignore[assignment]
    return adapt_connection, adapt_connection._connection

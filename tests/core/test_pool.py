"""The connection pool serves waiting requests first come, first served."""

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from fasttrack.core.pool import FairAsyncQueuePool


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A pool of one connection, so that every other user of it has to wait."""
    engine = create_async_engine(
        f"sqlite+aiosqlite:///{tmp_path}/pool.db",
        poolclass=FairAsyncQueuePool,
        pool_size=1,
        max_overflow=0,
        pool_timeout=2,
    )
    yield engine
    await engine.dispose()


async def _use(engine: AsyncEngine, name: str, order: list[str]) -> None:
    async with engine.connect() as connection:
        order.append(name)
        await connection.exec_driver_sql("SELECT 1")


async def test_a_returned_connection_goes_to_the_longest_waiter(engine: AsyncEngine) -> None:
    order: list[str] = []
    holder = await engine.connect()
    await holder.exec_driver_sql("SELECT 1")
    first = asyncio.create_task(_use(engine, "first", order))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(_use(engine, "second", order))
    await asyncio.sleep(0.05)

    await holder.close()
    # Asks the moment the connection is back, before the waiters had a chance to run.
    await _use(engine, "newcomer", order)
    await asyncio.gather(first, second)

    assert order == ["first", "second", "newcomer"]


async def test_a_waiter_that_gives_up_does_not_take_a_connection_with_it(
    engine: AsyncEngine,
) -> None:
    holder = await engine.connect()
    await holder.exec_driver_sql("SELECT 1")
    impatient = asyncio.create_task(_use(engine, "impatient", []))
    await asyncio.sleep(0.05)
    impatient.cancel()
    await asyncio.gather(impatient, return_exceptions=True)
    await holder.close()

    order: list[str] = []
    await asyncio.wait_for(_use(engine, "next", order), timeout=1)

    assert order == ["next"]


async def test_a_waiter_times_out_when_no_connection_comes_back(tmp_path: Path) -> None:
    engine = create_async_engine(
        f"sqlite+aiosqlite:///{tmp_path}/pool.db",
        poolclass=FairAsyncQueuePool,
        pool_size=1,
        max_overflow=0,
        pool_timeout=0.1,
    )
    holder = await engine.connect()
    await holder.exec_driver_sql("SELECT 1")
    try:
        with pytest.raises(PoolTimeout):
            await engine.connect()
    finally:
        await holder.close()
        await engine.dispose()


async def test_the_pool_logs_as_sqlalchemy_not_as_the_application(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fasttrack")
    async with engine.connect() as connection:
        await connection.exec_driver_sql("SELECT 1")
    await engine.dispose()

    assert not [record for record in caplog.records if record.name.startswith("fasttrack")]

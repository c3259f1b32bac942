"""Count the SQL statements an application runs, to see what its caches spared it."""

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI
from sqlalchemy import Engine, event
from sqlalchemy.ext.asyncio import AsyncEngine

from fasttrack.core.db import Database


class Statements:
    """A `before_cursor_execute` listener that keeps every statement it sees."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, *args: Any) -> None:
        """Called with the connection, the cursor, then the statement and the rest."""
        self.seen.append(args[2])

    def clear(self) -> None:
        self.seen.clear()

    def __len__(self) -> int:
        return len(self.seen)


@contextmanager
def listening_to_statements(
    engines: Iterable[AsyncEngine], listener: Callable[..., None]
) -> Iterator[None]:
    """`listener` as a `before_cursor_execute` listener of `engines` inside the block."""
    # On PostgreSQL the readers are the writer's engine with options, which runs the
    # writer's listeners too: one listener per pool.
    pools: dict[int, Engine] = {}
    for async_engine in engines:
        pools.setdefault(id(async_engine.pool), async_engine.sync_engine)
    for engine in pools.values():
        event.listen(engine, "before_cursor_execute", listener)
    try:
        yield
    finally:
        for engine in pools.values():
            event.remove(engine, "before_cursor_execute", listener)


@contextmanager
def counting_statements(app: FastAPI) -> Iterator[Statements]:
    """Every statement `app` runs inside the block, on its readers and its writers."""
    database: Database = app.state.database
    statements = Statements()
    engines = (database.write_engine, database.engine, database.single_statement_engine)
    with listening_to_statements(engines, statements):
        yield statements

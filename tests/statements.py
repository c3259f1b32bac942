"""Count the SQL statements an application runs, to see what its caches spared it."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI
from sqlalchemy import Engine, event

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
def counting_statements(app: FastAPI) -> Iterator[Statements]:
    """Every statement `app` runs inside the block, on its readers and its writer."""
    database: Database = app.state.database
    # On PostgreSQL the readers are the writer's engine with options, which runs the
    # writer's listeners too: one listener per pool.
    engines: dict[int, Engine] = {}
    for async_engine in (database.write_engine, database.engine, database.single_statement_engine):
        engines.setdefault(id(async_engine.pool), async_engine.sync_engine)
    statements = Statements()
    for engine in engines.values():
        event.listen(engine, "before_cursor_execute", statements)
    try:
        yield statements
    finally:
        for engine in engines.values():
            event.remove(engine, "before_cursor_execute", statements)

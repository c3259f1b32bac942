"""SQLite: one writer that takes the write lock when its transaction begins."""

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import text

from fasttrack.core.config import Settings
from fasttrack.core.db import Database, create_database
from tests.factories import TEST_SECRET


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    settings = Settings(
        _env_file=None,
        secret_key=SecretStr(TEST_SECRET),
        database_url=f"sqlite+aiosqlite:///{tmp_path}/writer.db",
    )
    database = create_database(settings)
    async with database.write_engine.begin() as connection:
        await connection.execute(text("CREATE TABLE item (id INTEGER PRIMARY KEY)"))
    yield database
    await database.dispose()


def _other_writer_can_begin(path: str) -> bool:
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError:
        return False
    other.execute("ROLLBACK")
    return True


async def test_a_write_transaction_holds_the_write_lock_from_its_first_read(
    database: Database,
) -> None:
    path = database.write_engine.url.database
    assert path is not None

    async with database.write_engine.begin() as connection:
        # A plain BEGIN would take only a read lock here and let the other writer in.
        await connection.execute(text("SELECT count(*) FROM item"))
        assert not _other_writer_can_begin(path)
        await connection.execute(text("INSERT INTO item (id) VALUES (1)"))

    assert _other_writer_can_begin(path)
    async with database.engine.connect() as reader:
        assert (await reader.execute(text("SELECT id FROM item"))).scalar_one() == 1


async def test_a_failed_first_statement_leaves_no_transaction_open(database: Database) -> None:
    path = database.write_engine.url.database
    assert path is not None

    with pytest.raises(Exception, match="no such table"):
        async with database.write_engine.begin() as connection:
            await connection.execute(text("SELECT * FROM missing"))

    assert _other_writer_can_begin(path)
    async with database.write_engine.begin() as connection:
        await connection.execute(text("INSERT INTO item (id) VALUES (2)"))
    async with database.engine.connect() as reader:
        assert (await reader.execute(text("SELECT id FROM item"))).scalar_one() == 2


async def test_a_transaction_without_statements_commits_nothing_and_ends(
    database: Database,
) -> None:
    path = database.write_engine.url.database
    assert path is not None

    async with database.write_engine.begin():
        pass

    assert _other_writer_can_begin(path)

"""SQLite: one writer that takes the write lock when its transaction begins."""

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import Executable, column, insert, table, text

from fasttrack.core.config import Settings
from fasttrack.core.db import Database, create_database, execute
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


ITEM = table("item", column("id"))
# Whether SQLAlchemy compiled the write or was handed SQL text, the lock comes with it.
FIRST_WRITES = pytest.mark.parametrize(
    "statement",
    [
        pytest.param(insert(ITEM).values(id=7), id="Core insert"),
        pytest.param(text("INSERT INTO item (id) VALUES (7)"), id="SQL text"),
    ],
)


async def _item_ids(database: Database) -> list[int]:
    async with database.engine.connect() as reader:
        return list((await reader.execute(text("SELECT id FROM item ORDER BY id"))).scalars())


@FIRST_WRITES
async def test_a_transaction_that_writes_first_takes_the_lock_with_that_write(
    database: Database, statement: Executable
) -> None:
    path = database.write_engine.url.database
    assert path is not None

    # As a session's transaction: it begins with the first statement.
    async with database.write_engine.connect() as connection:
        assert _other_writer_can_begin(path)  # nothing run yet: nothing held
        await connection.execute(statement)
        assert not _other_writer_can_begin(path)
        assert await _item_ids(database) == []  # readers do not see it before the commit
        await connection.commit()

    assert _other_writer_can_begin(path)
    assert await _item_ids(database) == [7]


@FIRST_WRITES
async def test_a_single_statement_commits_as_it_runs_and_holds_nothing(
    database: Database, statement: Executable
) -> None:
    path = database.write_engine.url.database
    assert path is not None

    async with database.single_statement_engine.connect() as connection:
        await connection.execute(statement)
        assert _other_writer_can_begin(path)
        assert await _item_ids(database) == [7]


@FIRST_WRITES
async def test_a_rolled_back_first_write_releases_the_lock_and_leaves_no_row(
    database: Database, statement: Executable
) -> None:
    path = database.write_engine.url.database
    assert path is not None

    connection = await database.write_engine.connect()
    try:
        await connection.execute(statement)
        assert not _other_writer_can_begin(path)
        await connection.rollback()
        assert _other_writer_can_begin(path)
    finally:
        await connection.close()

    assert await _item_ids(database) == []


async def test_a_session_whose_first_write_fails_later_rolls_that_write_back(
    database: Database,
) -> None:
    path = database.write_engine.url.database
    assert path is not None

    async def fail_after_the_first_write() -> None:
        async with database.session(write=True) as session:
            await execute(session, insert(ITEM).values(id=8))
            assert not _other_writer_can_begin(path)
            raise RuntimeError("the work fails after the first write")

    with pytest.raises(RuntimeError, match="after the first write"):
        await fail_after_the_first_write()

    assert _other_writer_can_begin(path)
    assert await _item_ids(database) == []


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param(ITEM.update().values(id=9), id="Core update"),
        pytest.param(ITEM.delete(), id="Core delete"),
        pytest.param(text("UPDATE item SET id = 9"), id="SQL text update"),
    ],
)
async def test_a_rolled_back_first_update_or_delete_changes_nothing(
    database: Database, statement: Executable
) -> None:
    path = database.write_engine.url.database
    assert path is not None
    async with database.write_engine.begin() as connection:
        await connection.execute(insert(ITEM).values(id=1))

    connection = await database.write_engine.connect()
    try:
        await connection.execute(statement)
        assert not _other_writer_can_begin(path)
        await connection.rollback()
    finally:
        await connection.close()

    assert _other_writer_can_begin(path)
    assert await _item_ids(database) == [1]

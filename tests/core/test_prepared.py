"""Prepared statements: compiled once per dialect, run on the driver, errors as SQLAlchemy's."""

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.core.config import Settings
from fasttrack.core.db import create_database, statements
from fasttrack.core.prepared import PreparedInsert, PreparedQuery, Row, compile_query
from fasttrack.tasks.models import Task, TaskStatus
from fasttrack.users.models import User
from tests.factories import TEST_SECRET, make_project, make_user

TASKS = sa.select(col(Task.id), col(Task.status), col(Task.created_at)).where(
    col(Task.project_id) == sa.bindparam("project_id"), col(Task.status) == sa.bindparam("status")
)
PAGE = TASKS.order_by(col(Task.id)).limit(sa.bindparam("limit", type_=sa.Integer))
USER_COUNT = PreparedQuery(sa.select(sa.func.count().label("users")).select_from(User))
INSERT_TASK = PreparedInsert(Task, returning=[col(Task.id), col(Task.version)])


def _dialect(url: str) -> sa.Dialect:
    # Only the dialect: an engine connects on first use, and this one is never used.
    return create_async_engine(url).dialect


SQLITE = _dialect("sqlite+aiosqlite://")
POSTGRESQL = _dialect("postgresql+asyncpg://nobody@127.0.0.1:1/none")


@pytest.mark.parametrize(
    ("dialect", "sql"),
    [
        (SQLITE, "task.project_id = ? AND task.status = ?"),
        (POSTGRESQL, "task.project_id = $1::INTEGER AND task.status = $2"),
    ],
    ids=["sqlite", "postgresql"],
)
def test_a_query_compiles_to_positional_sql_of_its_dialect(dialect: sa.Dialect, sql: str) -> None:
    compiled = compile_query(TASKS, dialect)

    assert sql in compiled.sql
    assert [name for name, _ in compiled.parameters] == ["project_id", "status"]
    # Enum members are bound as their values, whatever the driver.
    assert compiled.arguments({"project_id": 7, "status": TaskStatus.done}) == (7, "done")


def test_values_written_into_the_statement_are_bound_on_every_call() -> None:
    # SQLite cannot have a bound LIMIT without an OFFSET, which SQLAlchemy adds as a literal.
    compiled = compile_query(PAGE, SQLITE)

    assert "LIMIT ? OFFSET ?" in compiled.sql
    arguments = compiled.arguments({"project_id": 1, "status": "todo", "limit": 5})
    assert arguments[:3] == (1, "todo", 5)
    assert len(arguments) == len(compiled.parameters) == 4


def test_a_row_is_decoded_by_its_column_types() -> None:
    compiled = compile_query(TASKS, SQLITE)

    row = compiled.row((3, "in_progress", "2026-01-02 03:04:05.000006"))

    assert row == {
        "id": 3,
        "status": TaskStatus.in_progress,
        "created_at": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
    }


def test_a_query_is_compiled_once_per_dialect() -> None:
    query = PreparedQuery(TASKS)

    assert query.for_dialect(SQLITE) is query.for_dialect(_dialect("sqlite+aiosqlite://"))
    assert query.for_dialect(SQLITE) is not query.for_dialect(POSTGRESQL)


async def _insert_task(app: FastAPI, project_id: int, title: str, *, commit: bool) -> Row:
    async with app.state.database.write_sessionmaker() as writer:
        row = await INSERT_TASK.one(await statements(writer), project_id=project_id, title=title)
        await (writer.commit() if commit else writer.rollback())
    return row


async def test_an_insert_takes_the_defaults_of_the_table_model(
    app: FastAPI, session: AsyncSession
) -> None:
    project = await make_project(session, owner=await make_user(session))
    assert project.id is not None

    row = await _insert_task(app, project.id, "t", commit=True)

    stored = await session.get(Task, row["id"])
    assert stored is not None
    assert (row["version"], stored.status, stored.priority) == (1, "todo", "medium")
    assert stored.created_at.tzinfo is UTC


async def test_statements_in_a_session_commit_and_roll_back_with_it(
    app: FastAPI, session: AsyncSession
) -> None:
    project = await make_project(session, owner=await make_user(session))
    assert project.id is not None

    await _insert_task(app, project.id, "gone", commit=False)
    await _insert_task(app, project.id, "kept", commit=True)

    titles = (await session.exec(select(Task.title))).all()
    assert titles == ["kept"]


async def test_a_refused_statement_raises_the_error_sqlalchemy_would(
    app: FastAPI, session: AsyncSession
) -> None:
    async with app.state.database.write_sessionmaker() as writer:
        with pytest.raises(IntegrityError):
            await INSERT_TASK.one(await statements(writer), project_id=2**31 - 1, title="orphan")


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,
        secret_key=SecretStr(TEST_SECRET),
        database_url=f"sqlite+aiosqlite:///{tmp_path}/reads.db",
    )


async def test_sqlite_reads_cannot_write(sqlite_settings: Settings) -> None:
    database = create_database(sqlite_settings)
    async with database.write_engine.begin() as connection:
        await connection.run_sync(User.metadata.create_all)
    write = PreparedQuery(sa.delete(sa.table("user")).returning(sa.column("id")))
    try:
        with pytest.raises(OperationalError, match="readonly"):
            await database.reads.all(write)
        assert await database.reads.one(USER_COUNT) == {"users": 0}
    finally:
        await database.dispose()


async def test_sqlite_reads_reopen_after_close(sqlite_settings: Settings) -> None:
    database = create_database(sqlite_settings)
    async with database.write_engine.begin() as connection:
        await connection.run_sync(User.metadata.create_all)
    try:
        assert await database.reads.one(USER_COUNT) == {"users": 0}
        await database.reads.close()
        assert await database.reads.one(USER_COUNT) == {"users": 0}
    finally:
        await database.dispose()


async def test_a_read_of_a_missing_table_is_an_operational_error(
    sqlite_settings: Settings,
) -> None:
    database = create_database(sqlite_settings)
    try:
        with pytest.raises(OperationalError, match="no such table"):
            await database.reads.one(USER_COUNT)
    finally:
        await database.dispose()

"""Migration 0003 on a database holding version 1 data: nobody loses sight of anything.

Every project owner becomes its `owner` member and every assignee who is not a member of
the task's project a `viewer`; down and up again gives the same. SQLite by default,
PostgreSQL with TEST_DATABASE_URL.
"""

import asyncio
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from fasttrack.core.config import Settings
from fasttrack.core.migrations import alembic_config
from tests.database import database_of_its_own

V1_ROWS = [
    'INSERT INTO "user" (id, email, hashed_password, display_name, role, is_active, '
    "created_at, updated_at) VALUES "
    "(1, 'owner@example.com', 'x', 'Owner', 'user', true, '2026-01-01', '2026-01-01'), "
    "(2, 'assignee@example.com', 'x', 'Assignee', 'user', true, '2026-01-01', '2026-01-01'), "
    "(3, 'other@example.com', 'x', 'Other', 'user', true, '2026-01-01', '2026-01-01')",
    "INSERT INTO project (id, name, description, status, owner_id, version, todo_count, "
    "in_progress_count, done_count, created_at, updated_at) VALUES "
    "(1, 'One', NULL, 'active', 1, 1, 0, 0, 0, '2026-01-02', '2026-01-02'), "
    "(2, 'Two', NULL, 'active', 3, 1, 0, 0, 0, '2026-01-03', '2026-01-03')",
    "INSERT INTO task (id, project_id, title, description, status, priority, assignee_id, "
    "version, created_at, updated_at, completed_at) VALUES "
    "(1, 1, 'a', NULL, 'todo', 'medium', 2, 1, '2026-01-04', '2026-01-04', NULL), "
    "(2, 1, 'b', NULL, 'todo', 'medium', 2, 1, '2026-01-04', '2026-01-04', NULL), "
    "(3, 1, 'c', NULL, 'todo', 'medium', 1, 1, '2026-01-04', '2026-01-04', NULL), "
    "(4, 2, 'd', NULL, 'todo', 'medium', 2, 1, '2026-01-04', '2026-01-04', NULL), "
    "(5, 2, 'e', NULL, 'todo', 'medium', NULL, 1, '2026-01-04', '2026-01-04', NULL)",
]
EXPECTED_MEMBERS = [(1, 1, "owner"), (1, 2, "viewer"), (2, 2, "viewer"), (2, 3, "owner")]


@pytest.fixture
def v1_database_url(tmp_path: Path) -> str:
    return database_of_its_own(tmp_path, "v1")


async def _run(url: str, *statements: str) -> list[tuple[object, ...]]:
    engine = create_async_engine(url)
    rows: list[tuple[object, ...]] = []
    async with engine.begin() as connection:
        for statement in statements:
            result = await connection.execute(text(statement))
            if result.returns_rows:
                rows = [tuple(row) for row in result.all()]
    await engine.dispose()
    return rows


def _members(url: str) -> list[tuple[object, ...]]:
    return asyncio.run(
        _run(url, "SELECT project_id, user_id, role FROM project_member ORDER BY 1, 2")
    )


def test_owners_and_assignees_become_members_down_and_up_again(v1_database_url: str) -> None:
    database_url = v1_database_url
    config = alembic_config(Settings(_env_file=None, database_url=database_url))
    command.upgrade(config, "0002")
    asyncio.run(_run(database_url, *V1_ROWS))

    command.upgrade(config, "head")
    assert _members(database_url) == EXPECTED_MEMBERS

    command.downgrade(config, "0002")
    tasks = asyncio.run(_run(database_url, "SELECT id, assignee_id FROM task ORDER BY id"))
    assert tasks == [(1, 2), (2, 2), (3, 1), (4, 2), (5, None)]

    command.upgrade(config, "head")
    assert _members(database_url) == EXPECTED_MEMBERS

"""A task created without an assignee is one statement, run without a transaction
around it (autocommit: no BEGIN, no COMMIT) once the caches hold the caller and the
project (otherwise their reads open the transaction first); with an assignee, the
check, the task and the notification share one transaction."""

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy.engine import Connection
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.core.db import Database
from tests.factories import login, make_member, make_project, make_user
from tests.statements import listening_to_statements


class Inserts:
    """A `before_cursor_execute` listener: each INSERT, with the engine that ran it."""

    def __init__(self, database: Database) -> None:
        self._autocommit = database.single_statement_engine.sync_engine
        self.seen: list[tuple[str, str]] = []

    def __call__(self, conn: Connection, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT"):
            table = statement.split()[2].strip('"')
            how = "autocommit" if conn.engine is self._autocommit else "transaction"
            self.seen.append((table, how))


@pytest.fixture
def inserts(app: FastAPI) -> Iterator[Inserts]:
    database: Database = app.state.database
    listener = Inserts(database)
    engines = (database.write_engine, database.single_statement_engine)
    with listening_to_statements(engines, listener):
        yield listener


async def test_a_task_without_assignee_is_one_statement_outside_a_transaction(
    client: AsyncClient, session: AsyncSession, inserts: Inserts
) -> None:
    owner = await make_user(session)
    project = await make_project(session, owner=owner)
    headers = await login(client, owner)
    warm = await client.get(f"/projects/{project.id}/tasks", headers=headers)
    assert warm.status_code == 200
    inserts.seen.clear()

    created = await client.post(
        f"/projects/{project.id}/tasks", json={"title": "Alone"}, headers=headers
    )

    assert created.status_code == 201, created.text
    assert inserts.seen == [("task", "autocommit")]
    shown = await client.get(f"/projects/{project.id}", headers=headers)
    assert shown.json()["task_counts"]["todo"] == 1
    assert (await client.get(created.headers["Location"], headers=headers)).status_code == 200


async def test_a_task_with_an_assignee_is_written_in_one_transaction(
    client: AsyncClient, session: AsyncSession, inserts: Inserts
) -> None:
    owner = await make_user(session)
    assignee = await make_user(session)
    project = await make_project(session, owner=owner)
    await make_member(session, project=project, user=assignee)
    headers = await login(client, owner)
    inserts.seen.clear()

    created = await client.post(
        f"/projects/{project.id}/tasks",
        json={"title": "Shared", "assignee_id": assignee.id},
        headers=headers,
    )

    assert created.status_code == 201, created.text
    assert inserts.seen == [("task", "transaction"), ("notification", "transaction")]
    inbox = await client.get("/notifications", headers=await login(client, assignee))
    assert [item["type"] for item in inbox.json()["items"]] == ["task_assigned"]

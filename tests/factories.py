"""Plain async factories for test data, helpers that log in through the real API or forge
tokens, and the one assertion every error response must pass."""

import itertools
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from functools import cache
from types import ModuleType
from typing import Any

import bcrypt
import jwt
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from httpx import AsyncClient, Response
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.comments.models import Comment
from fasttrack.core.prepared import QueryRunner
from fasttrack.notifications.email import EmailSender
from fasttrack.projects.models import Project, ProjectStatus
from fasttrack.tasks.models import Priority, Task, TaskStatus
from fasttrack.users.models import Role, User, UserRead

TEST_SECRET = "test-secret-key-that-is-long-enough-for-hs256"
DEFAULT_PASSWORD = "correct horse battery"
_sequence = itertools.count(1)


@cache
def _hash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()


async def make_user(
    session: AsyncSession,
    *,
    email: str | None = None,
    password: str = DEFAULT_PASSWORD,
    role: Role = Role.user,
    is_active: bool = True,
    display_name: str | None = None,
) -> User:
    number = next(_sequence)
    user = User(
        email=email or f"user{number}@example.com",
        hashed_password=_hash(password),
        display_name=display_name or f"User {number}",
        role=role,
        is_active=is_active,
    )
    session.add(user)
    await session.commit()
    return user


async def make_admin(session: AsyncSession, **overrides: Any) -> User:
    return await make_user(session, role=Role.admin, **overrides)


async def make_project(
    session: AsyncSession,
    *,
    owner: User,
    name: str | None = None,
    description: str | None = None,
    status: ProjectStatus = ProjectStatus.active,
) -> Project:
    assert owner.id is not None
    project = Project(
        name=name or f"Project {next(_sequence)}",
        description=description,
        status=status,
        owner_id=owner.id,
    )
    session.add(project)
    await session.commit()
    return project


async def make_task(
    session: AsyncSession,
    *,
    project: Project,
    title: str | None = None,
    status: TaskStatus = TaskStatus.todo,
    priority: Priority = Priority.medium,
    assignee: User | None = None,
    description: str | None = None,
) -> Task:
    assert project.id is not None
    task = Task(
        project_id=project.id,
        title=title or f"Task {next(_sequence)}",
        status=status,
        priority=priority,
        assignee_id=assignee.id if assignee else None,
        description=description,
    )
    session.add(task)
    await session.commit()
    return task


async def make_comment(
    session: AsyncSession, *, task: Task, author: User, body: str = "A comment"
) -> Comment:
    assert task.id is not None
    assert author.id is not None
    comment = Comment(task_id=task.id, author_id=author.id, body=body)
    session.add(comment)
    await session.commit()
    return comment


async def make_assigned_task(
    session: AsyncSession, **task_overrides: Any
) -> tuple[dict[str, User], Task]:
    """A task with the cast of every access matrix: "owner" (of its project), "assignee",
    "admin", and "stranger" (an unrelated user)."""
    people = {
        "owner": await make_user(session),
        "assignee": await make_user(session),
        "admin": await make_admin(session),
        "stranger": await make_user(session),
    }
    project = await make_project(session, owner=people["owner"])
    task = await make_task(session, project=project, assignee=people["assignee"], **task_overrides)
    return people, task


async def token_pair(
    client: AsyncClient, user: User, password: str = DEFAULT_PASSWORD
) -> dict[str, Any]:
    response = await client.post("/auth/login", json={"email": user.email, "password": password})
    assert response.status_code == 200, response.text
    pair: dict[str, Any] = response.json()
    return pair


def bearer(access_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token}"}


async def login(
    client: AsyncClient, user: User, password: str = DEFAULT_PASSWORD
) -> dict[str, str]:
    """Authorization headers for `user`, obtained through POST /auth/login."""
    return bearer((await token_pair(client, user, password))["access_token"])


def claims_of(token: str) -> dict[str, Any]:
    """The claims of a token, read without checking it (to inspect what the API issued)."""
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def token_claims(user: User, *, kind: str = "access", **overrides: Any) -> dict[str, Any]:
    """Claims the API would issue for `user` right now, with `overrides` applied."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": str(user.id),
        "type": kind,
        "jti": str(uuid.uuid4()),
        "sid": str(uuid.uuid4()),
        "iat": now,
        "exp": now + 900,
        "iss": "fasttrack",
        "aud": "fasttrack-api",
    }
    claims.update(overrides)
    return claims


def sign(
    claims: dict[str, Any],
    *,
    key: str = TEST_SECRET,
    algorithm: str = "HS256",
    headers: dict[str, Any] | None = None,
) -> str:
    """A JWT over `claims`, signed like the API's own by default."""
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def assert_problem(response: Response, status: int, code: str) -> dict[str, Any]:
    """`response` is an RFC 9457 problem with this status and code (401s with a challenge)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert body["status"] == status
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    return body


class RecordingEmailSender:
    """An EmailSender that keeps what it is asked to send."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def send(self, message: EmailMessage) -> None:
        self.messages.append(message)


@contextmanager
def swapped_email_sender(app: FastAPI, sender: EmailSender) -> Iterator[None]:
    """Let `app` send e-mail through `sender` inside the block."""
    # Not monkeypatch.setattr: its undo deletes the attribute from Starlette's State.
    original = app.state.email_sender
    app.state.email_sender = sender
    try:
        yield
    finally:
        app.state.email_sender = original


def race_after_load(
    monkeypatch: pytest.MonkeyPatch,
    app: FastAPI,
    service: ModuleType,
    model: type[SQLModel],
    *,
    delete: bool = False,
) -> None:
    """Make another writer change (or delete) the row right after the request loaded it.

    The loaders read on the read pool before the request's own write transaction begins,
    so the other writer really commits in between, on SQLite as on PostgreSQL.
    """
    load = service.get_visible
    table: sa.Table = model.__table__  # type: ignore[attr-defined]

    async def load_then_race(reads: QueryRunner, row_id: int, *, viewer: UserRead) -> object:
        row = await load(reads, row_id, viewer=viewer)
        monkeypatch.setattr(service, "get_visible", load)
        change = (
            sa.delete(table).where(table.c.id == row_id)
            if delete
            else sa.update(table)
            .where(table.c.id == row_id)
            .values(version=table.c.version + 1, description="from the other writer")
        )
        async with app.state.database.write_engine.begin() as connection:
            await connection.execute(change)
        return row

    monkeypatch.setattr(service, "get_visible", load_then_race)

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
from fasttrack.core.cache import project_scope, project_tasks_scope
from fasttrack.core.db import UnitOfWork, commit, effects_of, execute
from fasttrack.notifications.email import EmailSender
from fasttrack.projects.models import MemberRole, Project, ProjectMember, ProjectStatus
from fasttrack.tasks.models import Priority, Task, TaskStatus
from fasttrack.users.models import Role, User

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
    assert project.id is not None
    await make_member(session, project=project, user=owner, role=MemberRole.owner)
    return project


async def make_member(
    session: AsyncSession, *, project: Project, user: User, role: MemberRole = MemberRole.editor
) -> ProjectMember:
    """`user` a member of `project` in `role` (as the API's "add member" would make it)."""
    assert project.id is not None
    assert user.id is not None
    member = ProjectMember(project_id=project.id, user_id=user.id, role=role)
    session.add(member)
    await session.commit()
    return member


async def _is_member(session: AsyncSession, project: Project, user: User) -> bool:
    found = await session.get(ProjectMember, (project.id, user.id))
    return found is not None


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
    if assignee is not None and not await _is_member(session, project, assignee):
        # An assignee is a member: the one who would have no other role is a viewer.
        await make_member(session, project=project, user=assignee, role=MemberRole.viewer)
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


async def race_after_load(
    monkeypatch: pytest.MonkeyPatch,
    app: FastAPI,
    service: ModuleType,
    model: type[SQLModel],
    *,
    client: AsyncClient,
    headers: dict[str, str],
    delete: bool = False,
) -> None:
    """Make another writer change (or delete) the row right after the request loaded it.

    A loader that reads the database does so in the request's own transaction, where no
    other writer can come in between. A loader served from the cache does not, and that
    is where the race is: the row is read into the cache first (as an earlier request
    would have), the request's loader finds it there, and the other writer then commits
    and invalidates, as a concurrent request would. The caller's token is checked once
    beforehand, so that authentication too is served from the cache.
    """
    assert (await client.get("/users/me", headers=headers)).status_code == 200
    # The cached loaders: the caller's access to a project (its task routes, PATCH and
    # DELETE; projects.access), a task (tasks.service).
    loader = "get_access" if model.__tablename__ == "project" else "get_visible"
    load = getattr(service, loader)
    table: sa.Table = model.__table__  # type: ignore[attr-defined]

    async def load_then_race(work: UnitOfWork, row_id: int, *args: Any, **kwargs: Any) -> object:
        monkeypatch.setattr(service, loader, load)
        # Two earlier requests: a task's first read tells the cache its project, the
        # second stores it under their stamp.
        for _ in range(2):
            async with app.state.database.unit_of_work(write=False) as earlier:
                await load(earlier, row_id, *args, **kwargs)
        row = await load(work, row_id, *args, **kwargs)
        change = (
            sa.delete(table).where(table.c.id == row_id)
            if delete
            else sa.update(table)
            .where(table.c.id == row_id)
            .values(version=table.c.version + 1, description="from the other writer")
        )
        async with app.state.database.session(write=True) as other:
            before = (await execute(other, sa.select(table).where(table.c.id == row_id))).one()
            if model.__tablename__ == "project":
                effects_of(other).invalidate(
                    project_scope(before.id), project_tasks_scope(before.id)
                )
            else:
                effects_of(other).invalidate(project_tasks_scope(before.project_id))
            await execute(other, change)
            await commit(other)
        return row

    monkeypatch.setattr(service, loader, load_then_race)

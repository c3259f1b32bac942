"""Every status the OpenAPI document declares for an operation is one it really answers.

PROBES holds, for each (method, path, status) of the document, a request that gets exactly
that status. A status declared without a probe, or a probe for a status no longer declared,
fails `test_every_documented_status_has_a_probe`: a status nobody can reach is removed from
the document rather than left to mislead clients.
"""

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.auth.tokens import TokenService, new_token_id
from fasttrack.comments.models import Comment
from fasttrack.core.config import Settings
from fasttrack.core.db import MAX_ID
from fasttrack.main import create_app
from fasttrack.notifications.models import Notification, NotificationType
from fasttrack.tasks.models import Task
from fasttrack.users.models import User
from tests.conftest import AppFactory
from tests.factories import DEFAULT_PASSWORD, bearer, make_assigned_task, make_comment

API: Final = "/api/v1"
MISSING: Final = MAX_ID  # a valid id no row has
INVALID: Final = 0  # below the range of ids: a 422


@dataclass
class Scene:
    """The cast of make_assigned_task (the assignee a viewer of the project), with a
    comment by the assignee and a notification for the owner; `call` fills path ids from
    these rows unless told otherwise (`user_id`: the assignee)."""

    app: FastAPI
    client: AsyncClient
    session: AsyncSession
    app_factory: AppFactory
    throttled: AsyncClient
    people: dict[str, User]
    task: Task
    comment: Comment
    notification: Notification
    headers: dict[str, dict[str, str]] = field(default_factory=dict)

    def ids(self) -> dict[str, int | None]:
        return {
            "project_id": self.task.project_id,
            "task_id": self.task.id,
            "comment_id": self.comment.id,
            "notification_id": self.notification.id,
            "user_id": self.people["assignee"].id,
        }

    async def call(
        self,
        method: str,
        path: str,
        *,
        as_: str | None = "owner",
        ids: dict[str, int | None] | None = None,
        headers: dict[str, str] | None = None,
        client: AsyncClient | None = None,
        **kwargs: Any,
    ) -> Response:
        url = path.format(**{**self.ids(), **(ids or {})})
        sent = {**(self.headers[as_] if as_ else {}), **(headers or {})}
        return await (client or self.client).request(method, url, headers=sent, **kwargs)


Probe = Callable[[Scene], Awaitable[Response]]
Operation = tuple[str, str]


def ok(**kwargs: Any) -> Callable[[Operation], Probe]:
    """The request as the owner (or `as_`) on the scene's rows, with `kwargs`."""
    return lambda op: lambda scene: scene.call(*op, **kwargs)


def anonymous(**kwargs: Any) -> Callable[[Operation], Probe]:
    return ok(as_=None, **kwargs)


def with_ids(value: int, *, as_: str = "admin", **kwargs: Any) -> Callable[[Operation], Probe]:
    """Every path id set to `value`, as someone who could otherwise see the row."""

    def build(op: Operation) -> Probe:
        names = [part[1:-1] for part in op[1].split("/") if part.startswith("{")]
        ids: dict[str, int | None] = dict.fromkeys(names, value)
        return lambda scene: scene.call(*op, as_=as_, ids=ids, **kwargs)

    return build


def throttled(op: Operation) -> Probe:
    """The request, twice, on an app that allows one request per window: a 429."""

    async def probe(scene: Scene) -> Response:
        await scene.call(*op, as_=None, client=scene.throttled)
        return await scene.call(*op, as_=None, client=scene.throttled)

    return probe


async def _offline_health(scene: Scene) -> Response:
    url = "sqlite+aiosqlite:////nonexistent/directory/fasttrack.db"
    async with scene.app_factory(lifespan=False, database_url=url) as app, _client(app) as client:
        return await client.get("/health/db")


async def _deactivated_login(scene: Scene, path: str) -> Response:
    stranger = scene.people["stranger"]
    stranger.is_active = False
    scene.session.add(stranger)
    await scene.session.commit()
    credentials = {"email": stranger.email, "password": DEFAULT_PASSWORD}
    if path.endswith("/token"):
        form = {"username": credentials["email"], "password": DEFAULT_PASSWORD}
        return await scene.client.post(path, data=form)
    return await scene.client.post(path, json=credentials)


async def _refresh_token(scene: Scene) -> str:
    owner = scene.people["owner"]
    login = {"email": owner.email, "password": DEFAULT_PASSWORD}
    response = await scene.client.post(f"{API}/auth/login", json=login)
    assert response.status_code == 200, response.text
    token: str = response.json()["refresh_token"]
    return token


async def _refresh(scene: Scene) -> Response:
    token = await _refresh_token(scene)
    return await scene.client.post(f"{API}/auth/refresh", json={"refresh_token": token})


def _login(path: str, *, password: str = DEFAULT_PASSWORD) -> Probe:
    async def probe(scene: Scene) -> Response:
        email = scene.people["owner"].email
        if path.endswith("/token"):
            return await scene.client.post(path, data={"username": email, "password": password})
        return await scene.client.post(path, json={"email": email, "password": password})

    return probe


def _demote_the_last_admin(op: Operation) -> Probe:
    return lambda scene: scene.call(
        *op, as_="admin", ids={"user_id": scene.people["admin"].id}, json={"role": "user"}
    )


def naming(person: str, *, as_: str = "owner", **fields: Any) -> Callable[[Operation], Probe]:
    """The request with a body whose `user_id` is `person`'s, and `fields`."""

    def build(op: Operation) -> Probe:
        return lambda scene: scene.call(
            *op, as_=as_, json={"user_id": scene.people[person].id, **fields}
        )

    return build


def on_member(person: str, *, as_: str = "owner", **kwargs: Any) -> Callable[[Operation], Probe]:
    """The request on `person`'s membership of the scene's project (path `user_id`)."""

    def build(op: Operation) -> Probe:
        return lambda scene: scene.call(
            *op, as_=as_, ids={"user_id": scene.people[person].id}, **kwargs
        )

    return build


AUTHENTICATED: Final = {401: anonymous(), 429: throttled}
BY_ID: Final = {404: with_ids(MISSING), 422: with_ids(INVALID), **AUTHENTICATED}
PAGE_422: Final = {422: ok(params={"limit": 0})}

# Per operation: status -> probe (a probe builder taking the operation, or a Probe).
TABLE: dict[Operation, dict[int, Any]] = {
    ("POST", f"{API}/auth/register"): {
        201: ok(as_=None, json={"email": "someone.new@example.com", "password": DEFAULT_PASSWORD}),
        409: lambda op: (
            lambda s: s.call(
                *op, as_=None, json={"email": s.people["owner"].email, "password": DEFAULT_PASSWORD}
            )
        ),
        422: ok(as_=None, json={"email": "not-an-email", "password": DEFAULT_PASSWORD}),
        429: throttled,
    },
    **{
        ("POST", f"{API}/auth/{name}"): {
            200: lambda op: _login(op[1]),
            401: lambda op: _login(op[1], password="a wrong password"),
            403: lambda op: lambda s: _deactivated_login(s, op[1]),
            422: ok(as_=None, json={"email": "not-an-email"}, data=None)
            if name == "login"
            else ok(as_=None, data={"username": "not-an-email", "password": "x"}),
            429: throttled,
        }
        for name in ("login", "token")
    },
    ("POST", f"{API}/auth/refresh"): {
        200: lambda op: _refresh,
        401: ok(as_=None, json={"refresh_token": "not-a-token"}),
        422: ok(as_=None, json={"refresh_token": ""}),
        429: throttled,
    },
    ("POST", f"{API}/auth/logout"): {
        204: ok(),
        422: ok(json={"refresh_token": ""}),
        **AUTHENTICATED,
    },
    ("POST", f"{API}/auth/logout-all"): {204: ok(), **AUTHENTICATED},
    ("POST", f"{API}/projects/{{project_id}}/tasks"): {
        201: ok(json={"title": "Write the release notes"}),
        # The assignee is a viewer of the project: they may not create tasks in it.
        403: ok(as_="assignee", json={"title": "Write the release notes"}),
        **BY_ID,
    },
    ("GET", f"{API}/projects/{{project_id}}/tasks"): {200: ok(), **BY_ID},
    ("GET", f"{API}/users/me/tasks"): {200: ok(as_="assignee"), **PAGE_422, **AUTHENTICATED},
    ("GET", f"{API}/tasks/{{task_id}}"): {200: ok(as_="assignee"), **BY_ID},
    ("PATCH", f"{API}/tasks/{{task_id}}"): {
        200: ok(json={"title": "Renamed"}),
        403: ok(as_="assignee", json={"title": "Renamed"}),
        409: ok(json={"status": "done"}),  # todo -> done skips in_progress
        412: ok(json={"title": "Renamed"}, headers={"If-Match": '"999"'}),
        **BY_ID,
    },
    ("DELETE", f"{API}/tasks/{{task_id}}"): {204: ok(), 403: ok(as_="assignee"), **BY_ID},
    ("GET", f"{API}/users/me"): {200: ok(), **AUTHENTICATED},
    ("PATCH", f"{API}/users/me"): {
        200: ok(json={"display_name": "Renamed"}),
        403: ok(json={"password": "a new password", "current_password": "not my password"}),
        422: ok(json={"role": "admin"}),
        **AUTHENTICATED,
    },
    ("GET", f"{API}/users"): {
        200: ok(as_="admin"),
        403: ok(),
        422: ok(as_="admin", params={"limit": 0}),
        **AUTHENTICATED,
    },
    ("GET", f"{API}/users/{{user_id}}"): {200: ok(as_="admin"), 403: ok(), **BY_ID},
    ("PATCH", f"{API}/users/{{user_id}}"): {
        200: ok(as_="admin", json={"display_name": "Renamed"}),
        403: ok(json={"display_name": "Renamed"}),
        409: _demote_the_last_admin,
        **BY_ID,
    },
    ("POST", f"{API}/projects"): {
        201: ok(json={"name": "Launch"}),
        422: ok(json={"name": ""}),
        **AUTHENTICATED,
    },
    ("GET", f"{API}/projects"): {200: ok(), **PAGE_422, **AUTHENTICATED},
    ("GET", f"{API}/projects/{{project_id}}"): {200: ok(), **BY_ID},
    ("PATCH", f"{API}/projects/{{project_id}}"): {
        200: ok(json={"name": "Renamed"}),
        403: ok(as_="assignee", json={"name": "Renamed"}),
        412: ok(json={"name": "Renamed"}, headers={"If-Match": '"999"'}),
        **BY_ID,
    },
    ("DELETE", f"{API}/projects/{{project_id}}"): {204: ok(), 403: ok(as_="assignee"), **BY_ID},
    # Members: the scene's `user_id` is the assignee's, a viewer of the project.
    ("GET", f"{API}/projects/{{project_id}}/members"): {200: ok(as_="assignee"), **BY_ID},
    ("POST", f"{API}/projects/{{project_id}}/members"): {
        201: naming("stranger"),
        403: naming("stranger", as_="assignee"),
        409: naming("assignee"),
        422: naming("stranger", role="owner"),
        **BY_ID,
    },
    ("GET", f"{API}/projects/{{project_id}}/members/{{user_id}}"): {
        200: ok(as_="assignee"),
        **BY_ID,
    },
    ("PATCH", f"{API}/projects/{{project_id}}/members/{{user_id}}"): {
        200: ok(json={"role": "editor"}),
        403: ok(as_="assignee", json={"role": "editor"}),
        409: on_member("owner", json={"role": "editor"}),  # the owner's row moves by transfer
        **BY_ID,
    },
    ("DELETE", f"{API}/projects/{{project_id}}/members/{{user_id}}"): {
        204: ok(as_="assignee"),  # leaving
        403: on_member("owner", as_="assignee"),
        409: on_member("owner"),
        **BY_ID,
    },
    ("POST", f"{API}/projects/{{project_id}}/transfer"): {
        200: naming("assignee"),
        403: naming("assignee", as_="assignee"),
        409: naming("owner"),
        422: naming("stranger"),  # not a member
        **BY_ID,
    },
    ("POST", f"{API}/tasks/{{task_id}}/comments"): {
        201: ok(as_="assignee", json={"body": "On it"}),
        **BY_ID,
    },
    ("GET", f"{API}/tasks/{{task_id}}/comments"): {200: ok(), **BY_ID},
    ("GET", f"{API}/comments/{{comment_id}}"): {200: ok(), **BY_ID},
    # The comment is the assignee's: the project owner sees it but may not delete it.
    ("DELETE", f"{API}/comments/{{comment_id}}"): {204: ok(as_="assignee"), 403: ok(), **BY_ID},
    ("GET", f"{API}/notifications"): {200: ok(), **PAGE_422, **AUTHENTICATED},
    ("POST", f"{API}/notifications/read-all"): {204: ok(), **AUTHENTICATED},
    ("POST", f"{API}/notifications/{{notification_id}}/read"): {
        204: ok(),
        404: with_ids(MISSING, as_="owner"),
        422: with_ids(INVALID, as_="owner"),
        **AUTHENTICATED,
    },
    ("GET", "/health"): {200: ok(as_=None)},
    ("GET", "/health/db"): {200: ok(as_=None), 503: lambda op: _offline_health},
}
PROBES: Final = {
    (method, path, status): build((method, path))
    for (method, path), statuses in TABLE.items()
    for status, build in statuses.items()
}


def _client(app: FastAPI) -> AsyncClient:
    return AsyncClient(transport=ASGITransport(app=app), base_url="http://test")


@pytest.fixture(scope="module")
async def throttled_client(settings: Settings) -> AsyncIterator[AsyncClient]:
    """A client of an app that lets one request through per window and address."""
    limited = {"rate_limit_enabled": True, "rate_limit_requests": 1, "redis_url": None}
    # The same logging settings as the session's app: building it changes no logging. No
    # lifespan: the limiter answers before any route, database or hub is involved.
    application = create_app(
        Settings.model_validate({**settings.model_dump(), **limited, "auth_rate_limit_requests": 1})
    )
    try:
        async with _client(application) as client:
            yield client
    finally:
        await application.state.database.dispose()
        application.state.hasher.close()


@pytest.fixture
async def scene(
    app: FastAPI, session: AsyncSession, app_factory: AppFactory, throttled_client: AsyncClient
) -> AsyncIterator[Scene]:
    people, task = await make_assigned_task(session)
    comment = await make_comment(session, task=task, author=people["assignee"])
    owner_id = people["owner"].id
    assert owner_id is not None
    notification = Notification(user_id=owner_id, type=NotificationType.task_assigned, data={})
    session.add(notification)
    await session.commit()
    tokens: TokenService = app.state.tokens
    headers = {}
    for role, user in people.items():
        assert user.id is not None
        headers[role] = bearer(tokens.issue_pair(user.id, sid=new_token_id())[0].access_token)
    async with _client(app) as client:
        yield Scene(
            app=app,
            client=client,
            session=session,
            app_factory=app_factory,
            throttled=throttled_client,
            people=people,
            task=task,
            comment=comment,
            notification=notification,
            headers=headers,
        )


def test_every_documented_status_has_a_probe(app: FastAPI) -> None:
    documented = {
        (method.upper(), path, int(status))
        for path, operations in app.openapi()["paths"].items()
        for method, operation in operations.items()
        for status in operation["responses"]
    }
    assert sorted(documented - PROBES.keys()) == [], "documented, but no probe reaches it"
    assert sorted(PROBES.keys() - documented) == [], "reached, but not documented"


@pytest.mark.parametrize(("method", "path", "status"), sorted(PROBES))
async def test_a_documented_status_is_reached(
    scene: Scene, method: str, path: str, status: int
) -> None:
    response = await PROBES[method, path, status](scene)

    assert response.status_code == status, response.text
    media_type = response.headers.get("content-type", "")
    if status >= 400:
        assert media_type == "application/problem+json"
    elif status != 204:
        assert media_type == "application/json"

"""`fasttrack seed-demo`: demo data once, printed logins that work against the API."""

import re
from collections.abc import AsyncIterator

import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient
from pydantic import SecretStr
from sqlalchemy import func
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from typer.testing import CliRunner

from fasttrack.cli import app as cli
from fasttrack.comments.models import Comment
from fasttrack.core.config import Environment, Settings
from fasttrack.core.db import create_database
from fasttrack.main import create_app
from fasttrack.projects.models import Project
from fasttrack.tasks.models import Task
from fasttrack.users.models import User
from tests.factories import TEST_SECRET, bearer

LOGIN_LINE = re.compile(r"^\s+(\S+@\S+)\s+(\S+)\s+\((admin|user)\)$", re.MULTILINE)


@pytest.fixture(scope="module")
def demo_database(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[str]]:
    """A migrated SQLite database seeded twice; the URL and both runs' output."""
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('demo')}/demo.db"
    runner = CliRunner()
    env = {
        "DATABASE_URL": url,
        "BCRYPT_ROUNDS": "4",
        "SECRET_KEY": TEST_SECRET,
        "LOG_LEVEL": "WARNING",
    }
    migrated = runner.invoke(cli, ["migrate"], env=env)
    assert migrated.exit_code == 0, migrated.output
    outputs = []
    for _ in range(2):
        seeded = runner.invoke(cli, ["seed-demo"], env=env)
        assert seeded.exit_code == 0, seeded.output
        outputs.append(seeded.output)
    return url, outputs


@pytest.fixture
async def demo_client(demo_database: tuple[str, list[str]]) -> AsyncIterator[AsyncClient]:
    settings = Settings(
        _env_file=None,
        environment=Environment.test,
        secret_key=SecretStr(TEST_SECRET),
        database_url=demo_database[0],
        bcrypt_rounds=4,
        log_level="WARNING",
        rate_limit_enabled=False,
    )
    application = create_app(settings)
    async with LifespanManager(application):
        transport = ASGITransport(app=application)
        async with AsyncClient(transport=transport, base_url="http://demo/api/v1") as http:
            yield http


def test_seed_demo_prints_the_logins_and_a_second_run_reuses_them(
    demo_database: tuple[str, list[str]],
) -> None:
    first, second = demo_database[1]

    assert first.startswith("Created demo users, projects, tasks and comments.")
    assert second.startswith("The demo data is already there")
    logins = LOGIN_LINE.findall(first)
    assert [role for _, _, role in logins] == ["admin", "user", "user"]
    assert LOGIN_LINE.findall(second) == logins


async def _count(session: AsyncSession, model: type[SQLModel]) -> int:
    return (await session.exec(select(func.count()).select_from(model))).one()


async def test_seed_demo_creates_each_row_once(demo_database: tuple[str, list[str]]) -> None:
    database = create_database(Settings(_env_file=None, database_url=demo_database[0]))
    try:
        async with database.session(write=False) as session:
            counts = {
                model.__name__: await _count(session, model)
                for model in (User, Project, Task, Comment)
            }
            statuses = (await session.exec(select(Task.status).order_by(col(Task.id)))).all()
    finally:
        await database.dispose()

    assert counts == {"User": 3, "Project": 2, "Task": 4, "Comment": 4}
    assert [str(status) for status in statuses] == ["done", "in_progress", "todo", "todo"]


async def test_a_printed_login_works_against_the_api(
    demo_database: tuple[str, list[str]], demo_client: AsyncClient
) -> None:
    printed = LOGIN_LINE.findall(demo_database[1][0])
    email, password = next((email, password) for email, password, role in printed if role == "user")

    response = await demo_client.post("/auth/login", json={"email": email, "password": password})

    assert response.status_code == 200, response.text
    headers = bearer(response.json()["access_token"])
    projects = (await demo_client.get("/projects", headers=headers)).json()["items"]
    assert [project["name"] for project in projects] == ["Team offsite", "Product launch"]
    assert projects[1]["task_counts"] == {"todo": 2, "in_progress": 1, "done": 1, "total": 4}
    tasks = (await demo_client.get(f"/projects/{projects[1]['id']}/tasks", headers=headers)).json()
    comments = await demo_client.get(f"/tasks/{tasks['items'][0]['id']}/comments", headers=headers)
    assert len(comments.json()["items"]) == 1

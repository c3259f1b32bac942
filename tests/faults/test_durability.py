"""kill -9 of the server under a stream of writes: every acknowledged write survives, whole."""

import itertools
import os
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from tests.faults.conftest import ServerFactory, add_member, register_and_login
from tests.faults.processes import wait_for

WRITERS: Final = 8
# Enough acknowledged writes that several are in flight when the process dies.
KILL_AFTER: Final = 60
STATUSES: Final = ("todo", "in_progress", "done")
PRIORITIES: Final = ("low", "medium", "high")

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, bool]:
    """The server's database URL, and whether `fasttrack serve` should migrate it."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/durability.db", True
    if not TEST_DATABASE_URL.startswith("postgresql"):
        pytest.skip("set TEST_DATABASE_URL to a PostgreSQL database to run")
    # The test session's `app` fixture created the tables there (and empties them after).
    return TEST_DATABASE_URL, False


class Writers:
    """Threads that create tasks until the server stops answering; they keep what got a 201."""

    def __init__(self, base_url: str, headers: dict[str, str], projects: list[int], assignee: int):
        self.acknowledged: dict[int, dict[str, Any]] = {}
        self.unexpected: list[str] = []
        self._base_url = base_url
        self._headers = headers
        self._projects = projects
        self._assignee = assignee
        self._lock = threading.Lock()
        self._numbers = itertools.count()

    def __len__(self) -> int:
        with self._lock:
            return len(self.acknowledged)

    def run(self, writer: int) -> None:
        with httpx.Client(base_url=self._base_url, headers=self._headers, timeout=10) as client:
            while True:
                number = next(self._numbers)
                body = {
                    "title": f"Task {number} by writer {writer}",
                    "description": f"Written by writer {writer} " * (1 + number % 5),
                    "status": STATUSES[number % 3],
                    "priority": PRIORITIES[(number // 3) % 3],
                    "assignee_id": self._assignee,
                }
                project = self._projects[number % len(self._projects)]
                try:
                    response = client.post(f"/api/v1/projects/{project}/tasks", json=body)
                except httpx.TransportError:
                    return  # the server is gone
                with self._lock:
                    if response.status_code == 201:
                        task = response.json()
                        self.acknowledged[task["id"]] = task
                    else:
                        self.unexpected.append(f"{response.status_code} {response.text}")


def _walk(client: httpx.Client, path: str) -> Iterator[dict[str, Any]]:
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 100}
        if cursor:
            params["cursor"] = cursor
        response = client.get(path, params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        yield from page["items"]
        if not page["has_more"]:
            return
        cursor = page["next_cursor"]


def test_acknowledged_writes_survive_kill_9(
    server_factory: ServerFactory, database: tuple[str, bool]
) -> None:
    url, migrate = database
    env = {"DATABASE_URL": url, "RATE_LIMIT_ENABLED": "false", "LOG_LEVEL": "WARNING"}
    server = server_factory(env=env, migrate=migrate)
    base_url = server.start()
    _, owner = register_and_login(base_url, "owner@durability.example.com")
    assignee, assignee_headers = register_and_login(base_url, "assignee@durability.example.com")
    projects = []
    for name in ("Alpha", "Beta"):
        created = httpx.post(f"{base_url}/api/v1/projects", json={"name": name}, headers=owner)
        assert created.status_code == 201, created.text
        projects.append(created.json()["id"])
        add_member(base_url, owner, created.json()["id"], assignee["id"])

    writers = Writers(base_url, owner, projects, assignee["id"])
    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        running = [pool.submit(writers.run, number) for number in range(WRITERS)]
        try:
            wait_for(lambda: len(writers) >= KILL_AFTER, timeout=30, what="writes acknowledged")
        finally:
            server.kill()
        for future in running:
            future.result()
    assert not writers.unexpected, writers.unexpected[:5]

    base_url = server.start()  # same database, a fresh process
    with httpx.Client(base_url=f"{base_url}/api/v1", headers=owner, timeout=10) as client:
        for task_id, acknowledged in writers.acknowledged.items():
            response = client.get(f"/tasks/{task_id}")
            assert response.status_code == 200, f"acknowledged task {task_id}: {response.text}"
            assert response.json() == acknowledged

        rows: list[dict[str, Any]] = []
        for project in projects:
            tasks = list(_walk(client, f"/projects/{project}/tasks"))
            rows += tasks
            expected = Counter(task["status"] for task in tasks)

            def counts_match(project: int = project, expected: Counter[str] = expected) -> bool:
                counts: dict[str, int] = client.get(f"/projects/{project}").json()["task_counts"]
                return counts == {
                    **{status: expected[status] for status in STATUSES},
                    "total": expected.total(),
                }

            wait_for(counts_match, timeout=5, what=f"task_counts of project {project} = its rows")
        # Writes cut off by the kill may or may not have committed, but none is half there.
        assert set(writers.acknowledged) <= {task["id"] for task in rows}

    # Each task and its assignee's inbox entry were committed together, or not at all.
    with httpx.Client(base_url=f"{base_url}/api/v1", headers=assignee_headers) as client:
        notified = Counter(
            item["data"]["task_id"]
            for item in _walk(client, "/notifications")
            if item["type"] == "task_assigned"
        )
    assert notified == Counter(task["id"] for task in rows)

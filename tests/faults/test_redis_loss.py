"""Redis goes away and comes back: the service keeps answering, falls back to local rate
limiting and fan-out (and says so in its log), then shares both through Redis again."""

import json
import queue
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import httpx
from httpx_ws import WebSocketSession, connect_ws
from redis import Redis
from redis.client import PubSub

from fasttrack.notifications.redis_broker import CHANNEL
from fasttrack.ratelimit.limiter import KEY_PREFIX
from tests.faults.conftest import ServerFactory, register_and_login
from tests.faults.processes import RedisServer, Server, wait_for

# A rate limiter and a broker must never make a request slow, Redis or no Redis.
MAX_ANSWER_SECONDS: Final = 1.0
# The limiter probes a lost Redis every 5 s; the broker resubscribes within 5 s.
RECOVERY_SECONDS: Final = 10.0
RATE_LIMIT_FALLBACK_LOG: Final = "rate-limit storage unavailable"
RATE_LIMIT_RESTORED_LOG: Final = "rate-limit storage is reachable again"
FAN_OUT_FALLBACK_LOG: Final = "delivering to local connections only"
SUBSCRIPTION_BACKING_OFF_LOG: Final = "retrying in 2.0s"
SUBSCRIPTION_RESTORED_LOG: Final = "Redis subscription restored"


class Owner:
    """The project owner's side: creates tasks assigned to the assignee, and times it."""

    def __init__(self, client: httpx.Client, assignee_id: int) -> None:
        self.client = client
        created = self.client.post("/projects", json={"name": "Fan-out"})
        assert created.status_code == 201, created.text
        self._project = created.json()["id"]
        self._assignee_id = assignee_id
        # Only a member can be assigned (the assignee hears of it: `_assigned_task` skips it).
        added = self.client.post(
            f"/projects/{self._project}/members", json={"user_id": assignee_id, "role": "viewer"}
        )
        assert added.status_code == 201, added.text
        self.slowest = 0.0

    def _timed(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        started = time.monotonic()
        response = self.client.request(method, path, **kwargs)
        self.slowest = max(self.slowest, time.monotonic() - started)
        return response

    def assign_task(self, title: str) -> int:
        body = {"title": title, "assignee_id": self._assignee_id}
        response = self._timed("POST", f"/projects/{self._project}/tasks", json=body)
        assert response.status_code == 201, response.text
        assert "x-ratelimit-remaining" in response.headers
        task_id: int = response.json()["id"]
        return task_id

    def read(self) -> None:
        response = self._timed("GET", "/users/me")
        assert response.status_code == 200, response.text
        assert "x-ratelimit-remaining" in response.headers


def _status_of_me(base_url: str, headers: dict[str, str]) -> int:
    return httpx.get(f"{base_url}/api/v1/users/me", headers=headers, timeout=10).status_code


def _assigned_task(socket: WebSocketSession, *, timeout: float = 5) -> int:
    """The task id of the next `task_assigned` push (heartbeat pings are skipped)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = socket.receive_json(timeout=left)
        except queue.Empty:
            break
        if message["type"] == "task_assigned":
            task_id: int = message["data"]["task_id"]
            return task_id
    raise AssertionError(f"no task_assigned push within {timeout} s")


def _no_more_pushes(socket: WebSocketSession) -> bool:
    try:
        message = socket.receive_json(timeout=0.5)
    except queue.Empty:
        return True
    return bool(message["type"] == "ping")


def _published_tasks(subscriber: PubSub) -> list[int]:
    """Task ids of the notifications that went through the Redis channel so far."""
    tasks = []
    while (message := subscriber.get_message(timeout=0.2)) is not None:
        if message["type"] != "message":
            continue
        event = json.loads(message["data"])
        tasks += [item["message"]["data"]["task_id"] for item in event.get("messages", ())]
    return tasks


@contextmanager
def _channel(redis: RedisServer) -> Iterator[PubSub]:
    with Redis.from_url(redis.url) as client, client.pubsub() as subscriber:
        subscriber.subscribe(f"{CHANNEL}:0")  # the channel of database 0, the one in its URL
        subscriber.get_message(timeout=1)  # the subscription confirmation
        yield subscriber


def _rate_limit_keys(redis: RedisServer) -> list[bytes]:
    with Redis.from_url(redis.url) as client:
        return list(client.scan_iter(match=f"{KEY_PREFIX}*"))


def _logged(server: Server, line: str) -> bool:
    return line in server.log()


def test_losing_redis_degrades_to_local_and_recovers(
    redis_server: RedisServer, server_factory: ServerFactory, tmp_path: Path
) -> None:
    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/fasttrack.db",
        "REDIS_URL": redis_server.url,
        "RATE_LIMIT_ENABLED": "true",
        "RATE_LIMIT_REQUESTS": "10000",
        "AUTH_RATE_LIMIT_REQUESTS": "100",
        "LOG_LEVEL": "INFO",
    }
    server = server_factory(env=env)
    base_url = server.start()
    assignee, assignee_headers = register_and_login(base_url, "assignee@redis.example.com")
    _, owner_headers = register_and_login(base_url, "owner@redis.example.com")
    token = assignee_headers["Authorization"].removeprefix("Bearer ")
    ws_url = f"{base_url.replace('http', 'ws')}/ws?token={token}"
    socket: WebSocketSession

    with (
        httpx.Client(base_url=f"{base_url}/api/v1", headers=owner_headers, timeout=10) as client,
        httpx.Client() as assignee_client,
        connect_ws(ws_url, assignee_client) as socket,
    ):
        owner = Owner(client, assignee["id"])
        # Healthy: limits are counted in Redis and pushes travel through it. The burst
        # leaves several pooled connections to Redis, all of them broken once it dies.
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = set(pool.map(_status_of_me, [base_url] * 32, [owner_headers] * 32))
        assert statuses == {200}
        assert _rate_limit_keys(redis_server)
        with _channel(redis_server) as subscriber:
            task = owner.assign_task("Before the outage")
            assert _assigned_task(socket) == task
            assert _published_tasks(subscriber) == [task]

        redis_server.kill()
        owner.slowest = 0.0
        task = owner.assign_task("During the outage")
        assert _assigned_task(socket) == task  # delivered to this process's own sockets

        def backing_off() -> bool:
            owner.read()
            return _logged(server, SUBSCRIPTION_BACKING_OFF_LOG)

        # Long enough that the broker waits a while before its next attempt.
        wait_for(backing_off, timeout=10, interval=0.1, what="the broker backing off")
        log = server.log()
        assert RATE_LIMIT_FALLBACK_LOG in log
        assert FAN_OUT_FALLBACK_LOG in log
        assert owner.slowest < MAX_ANSWER_SECONDS, f"{owner.slowest:.3f} s without Redis"

        redis_server.start()  # the same port, empty
        restarted = time.monotonic()
        # A push right away, before this process may have subscribed again, still arrives.
        task = owner.assign_task("Right after Redis is back")
        assert _assigned_task(socket) == task

        def counted_in_redis() -> bool:
            owner.read()
            return bool(_rate_limit_keys(redis_server))

        wait_for(counted_in_redis, timeout=RECOVERY_SECONDS, interval=0.2, what="keys in Redis")
        limits_back = time.monotonic() - restarted
        wait_for(
            lambda: _logged(server, SUBSCRIPTION_RESTORED_LOG),
            timeout=RECOVERY_SECONDS,
            what="the broker subscribed again",
        )
        fan_out_back = time.monotonic() - restarted
        assert _logged(server, RATE_LIMIT_RESTORED_LOG)
        assert owner.slowest < MAX_ANSWER_SECONDS, f"{owner.slowest:.3f} s without Redis"

        with _channel(redis_server) as subscriber:
            task = owner.assign_task("After the outage")
            assert _assigned_task(socket) == task
            assert _published_tasks(subscriber) == [task]  # through Redis again
        assert _no_more_pushes(socket)  # and each push arrived once

    print(  # the measurements, shown with pytest -s
        f"\nRedis back: rate limits shared again within {limits_back:.2f} s, fan-out "
        f"subscribed again within {fan_out_back:.2f} s; slowest request while Redis was "
        f"down or returning {owner.slowest * 1000:.0f} ms"
    )

"""GET /ws (SPEC §7): authentication, replay, the frame protocol, heartbeat, revocation."""

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from httpx_ws import WebSocketDisconnect
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.exc import OperationalError
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.auth import service as auth_service
from fasttrack.auth.models import RevokedToken
from fasttrack.core.db import utcnow
from fasttrack.core.effects import Effects
from fasttrack.notifications import hub as hub_module
from fasttrack.notifications import service as notification_service
from fasttrack.notifications.hub import Hub
from fasttrack.notifications.models import Notification, NotificationType, StoredNotification
from fasttrack.notifications.service import notifications_event
from fasttrack.projects.models import MemberRole
from fasttrack.users.models import User
from tests.conftest import AppFactory
from tests.factories import (
    DEFAULT_PASSWORD,
    bearer,
    claims_of,
    login,
    make_admin,
    make_member,
    make_project,
    make_user,
    sign,
    token_claims,
    token_pair,
)
from tests.notifications.sockets import (
    assert_nothing_pending,
    close_code,
    open_socket,
    receive,
    receive_notifications,
    wait_until,
    ws_client,
)

# Short enough for fast tests, long enough that a busy machine still answers in time.
HEARTBEAT = {"ws_heartbeat_interval": 0.2, "ws_heartbeat_timeout": 0.2}


@pytest.fixture
async def fast_app(app_factory: AppFactory) -> AsyncIterator[FastAPI]:
    """An app whose heartbeat runs every 0.2 s."""
    async with app_factory(**HEARTBEAT) as application:
        yield application


async def _token(client: AsyncClient, user: User) -> str:
    token: str = (await token_pair(client, user))["access_token"]
    return token


async def _store(session: AsyncSession, user: User, count: int) -> list[int]:
    """`count` notifications in `user`'s inbox, as if events happened while they were away."""
    assert user.id is not None
    rows = [
        Notification(
            user_id=user.id, type=NotificationType.comment_added, data={"comment_id": number}
        )
        for number in range(count)
    ]
    session.add_all(rows)
    await session.commit()
    return [row.id for row in rows if row.id is not None]


def _stored(row: Notification | None) -> StoredNotification:
    assert row is not None
    return StoredNotification.model_validate(row, from_attributes=True)


async def _assign_new_task(
    client: AsyncClient, session: AsyncSession, owner: User, assignee: User
) -> int:
    """Create a task assigned to `assignee` in a new project of `owner`'s that `assignee`
    is a member of; the id of the notification it produced."""
    project = await make_project(session, owner=owner)
    await make_member(session, project=project, user=assignee, role=MemberRole.viewer)
    response = await client.post(
        f"/projects/{project.id}/tasks",
        json={"title": "T", "assignee_id": assignee.id},
        headers=await login(client, owner),
    )
    assert response.status_code == 201, response.text
    inbox = await client.get("/notifications", headers=await login(client, assignee))
    newest: int = inbox.json()["items"][0]["id"]
    return newest


# --- Authentication -------------------------------------------------------------------


def _forged(user: User, **claims: Any) -> str:
    return sign(token_claims(user, **claims))


TOKENS: dict[str, Callable[[User], str | None]] = {
    "missing": lambda user: None,
    "empty": lambda user: "",
    "garbage": lambda user: "not-a-jwt",
    "expired": lambda user: _forged(user, exp=int(time.time()) - 10),
    "wrong signature": lambda user: sign(
        token_claims(user), key="another-secret-key-that-is-long-enough-for-hs256"
    ),
    "refresh token": lambda user: _forged(user, kind="refresh"),
    "unknown user": lambda user: sign({**token_claims(user), "sub": "999999"}),
    "too long": lambda user: "x" * 5000,
}


@pytest.mark.parametrize("kind", TOKENS)
async def test_a_bad_token_is_accepted_then_closed_with_4001(
    app: FastAPI, session: AsyncSession, kind: str
) -> None:
    user = await make_user(session)
    async with ws_client(app) as http, open_socket(http, TOKENS[kind](user), ready=False) as ws:
        assert await close_code(ws) == (4001, [])


async def test_a_revoked_token_is_closed_with_4001(
    app: FastAPI, client: AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    token = await _token(client, user)
    assert (await client.post("/auth/logout", headers=bearer(token))).status_code == 204

    async with ws_client(app) as http, open_socket(http, token, ready=False) as ws:
        assert await close_code(ws) == (4001, [])


async def test_an_inactive_user_is_closed_with_4001(
    app: FastAPI, client: AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    token = await _token(client, user)
    user.is_active = False
    session.add(user)
    await session.commit()

    async with ws_client(app) as http, open_socket(http, token, ready=False) as ws:
        assert await close_code(ws) == (4001, [])


@pytest.mark.parametrize("since", ["-1", "abc", str(2**63)])
async def test_a_malformed_since_is_refused_without_a_crash(
    app: FastAPI, client: AsyncClient, session: AsyncSession, since: str
) -> None:
    token = await _token(client, await make_user(session))
    async with ws_client(app) as http:
        with pytest.raises(WebSocketDisconnect) as refused:
            async with open_socket(http, token, since=since, ready=False):
                pass
    assert refused.value.code == 1008


# --- Replay ---------------------------------------------------------------------------


async def test_a_notification_made_while_offline_is_in_the_inbox_and_replayed(
    app: FastAPI, client: AsyncClient, session: AsyncSession
) -> None:
    owner, assignee = await make_user(session), await make_user(session)
    notification_id = await _assign_new_task(client, session, owner, assignee)

    async with (
        ws_client(app) as http,
        open_socket(http, await _token(client, assignee), since=0, ready=False) as ws,
    ):
        (replayed,) = await receive_notifications(ws, 1)
        await assert_nothing_pending(ws)

    assert replayed["id"] == notification_id
    assert replayed["type"] == "task_assigned"
    assert replayed["data"]["task_title"] == "T"


async def test_reconnecting_with_since_replays_exactly_the_missed_ones_in_order(
    app: FastAPI, client: AsyncClient, session: AsyncSession
) -> None:
    owner, assignee = await make_user(session), await make_user(session)
    token = await _token(client, assignee)
    async with ws_client(app) as http:
        async with open_socket(http, token) as ws:
            first = await _assign_new_task(client, session, owner, assignee)
            (seen,) = await receive_notifications(ws, 1)
            assert seen["id"] == first
        missed = [await _assign_new_task(client, session, owner, assignee) for _ in range(3)]

        async with open_socket(http, token, since=seen["id"], ready=False) as ws:
            replayed = await receive_notifications(ws, 3)
            live = await _assign_new_task(client, session, owner, assignee)
            (after,) = await receive_notifications(ws, 1)
            await assert_nothing_pending(ws)

    assert [message["id"] for message in replayed] == missed
    assert after["id"] == live


async def test_replay_walks_every_batch_and_only_the_users_own(
    app: FastAPI, session: AsyncSession, client: AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notification_service, "REPLAY_BATCH", 2)
    user, other = await make_user(session), await make_user(session)
    mine = await _store(session, user, 5)
    await _store(session, other, 2)

    async with (
        ws_client(app) as http,
        open_socket(http, await _token(client, user), since=mine[0], ready=False) as ws,
    ):
        replayed = await receive_notifications(ws, 4)
        await assert_nothing_pending(ws)

    assert [message["id"] for message in replayed] == mine[1:]


async def test_nothing_is_lost_or_doubled_at_the_seam_between_replay_and_live(
    app: FastAPI, client: AsyncClient, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Notifications committed while the replay runs come once each, whatever their ids.

    On PostgreSQL, ids are taken when rows are inserted but become visible when their
    transaction commits, so a notification can appear after the replay read a newer one.
    """
    user = await make_user(session)
    assert user.id is not None
    older, replayed, newer = await _store(session, user, 3)
    hub: Hub = app.state.hub
    late = _stored(await session.get(Notification, older))
    # `older` is hidden from the replay, as if its transaction had not committed yet.
    missed_since = notification_service.missed_since

    async def replay_racing_commits(
        reads: AsyncSession, user_id: int, since: int, **kw: Any
    ) -> list[StoredNotification]:
        batch = [row for row in await missed_since(reads, user_id, since, **kw) if row.id != older]
        rows = {row.id: row for row in batch}
        # Published while the replay is under way: one it also read, one it did not.
        await hub.publish(Effects(events=[notifications_event([rows[replayed], late])]))
        return batch

    monkeypatch.setattr(notification_service, "missed_since", replay_racing_commits)
    async with (
        ws_client(app) as http,
        open_socket(http, await _token(client, user), since=0, ready=False) as ws,
    ):
        received = await receive_notifications(ws, 3)
        await assert_nothing_pending(ws)

    assert [message["id"] for message in received] == [replayed, newer, older]


# --- Frames ---------------------------------------------------------------------------


async def test_a_client_ping_is_answered_with_a_pong(
    app: FastAPI, client: AsyncClient, session: AsyncSession
) -> None:
    async with (
        ws_client(app) as http,
        open_socket(http, await _token(client, await make_user(session))) as ws,
    ):
        await ws.send_json({"type": "ping"})
        assert await receive(ws) == {"type": "pong"}


MALFORMED = {
    "not JSON": "{nope",
    "a JSON list": "[1, 2]",
    "an unknown type": '{"type": "subscribe"}',
    "no type": '{"hello": "world"}',
}


@pytest.mark.parametrize("frame", MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_malformed_frame_gets_an_error_and_the_socket_stays_open(
    app: FastAPI, client: AsyncClient, session: AsyncSession, frame: str
) -> None:
    async with (
        ws_client(app) as http,
        open_socket(http, await _token(client, await make_user(session))) as ws,
    ):
        await ws.send_text(frame)
        error = await receive(ws)
        await assert_nothing_pending(ws)

    assert error["type"] == "error"
    assert error["data"]["code"] == "invalid_message"
    assert error["data"]["detail"]


async def test_a_binary_frame_gets_an_error(
    app: FastAPI, client: AsyncClient, session: AsyncSession
) -> None:
    async with (
        ws_client(app) as http,
        open_socket(http, await _token(client, await make_user(session))) as ws,
    ):
        await ws.send_bytes(b'{"type": "ping"}')
        error = await receive(ws)

    assert error["type"] == "error"
    assert error["data"]["code"] == "invalid_message"


@pytest.mark.parametrize("send", ["text", "bytes"])
async def test_a_frame_over_4_kib_closes_with_1009(
    app: FastAPI, client: AsyncClient, session: AsyncSession, send: str
) -> None:
    user = await make_user(session)
    async with ws_client(app) as http, open_socket(http, await _token(client, user)) as ws:
        # Exactly 4 KiB is still fine.
        await ws.send_text('{"type": "ping", "pad": "' + "x" * (4096 - 29) + '"}')
        assert await receive(ws) == {"type": "pong"}
        frame = '{"type": "ping", "pad": "' + "x" * 4096 + '"}'
        if send == "text":
            await ws.send_text(frame)
        else:
            await ws.send_bytes(frame.encode())
        assert await close_code(ws) == (1009, [])
    assert app.state.hub.connections_of(user.id) == frozenset()


# --- Heartbeat ------------------------------------------------------------------------


async def test_a_client_answering_pings_stays_connected(
    fast_app: FastAPI, client: AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    async with ws_client(fast_app) as http, open_socket(http, await _token(client, user)) as ws:
        for _ in range(3):
            assert await receive(ws) == {"type": "ping"}
            await ws.send_json({"type": "pong"})
        await assert_nothing_pending(ws)
        assert len(fast_app.state.hub.connections_of(user.id)) == 1


async def test_no_pong_closes_with_4002_and_forgets_the_connection(
    fast_app: FastAPI, client: AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    async with ws_client(fast_app) as http, open_socket(http, await _token(client, user)) as ws:
        started = time.monotonic()
        code, messages = await close_code(ws, pong=False)
        elapsed = time.monotonic() - started

    assert (code, messages) == (4002, [])
    assert elapsed < 2
    assert fast_app.state.hub.connections_of(user.id) == frozenset()
    assert fast_app.state.hub.open_connections == 0


async def test_the_opening_tokens_expiry_closes_with_4001(
    app: FastAPI, client: AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    token = _forged(user, exp=int(time.time()) + 2)
    async with ws_client(app) as http, open_socket(http, token) as ws:
        await assert_nothing_pending(ws)
        assert await close_code(ws) == (4001, [])


# --- Revocation -----------------------------------------------------------------------


async def test_logout_closes_that_sessions_sockets_with_4003_and_no_other(
    app: FastAPI, client: AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    leaving, staying = await _token(client, user), await _token(client, user)
    async with (
        ws_client(app) as http,
        open_socket(http, leaving) as first,
        open_socket(http, leaving) as second,
        open_socket(http, staying) as other,
    ):
        assert (await client.post("/auth/logout", headers=bearer(leaving))).status_code == 204
        assert await close_code(first) == (4003, [])
        assert await close_code(second) == (4003, [])
        await assert_nothing_pending(other)


async def test_logout_all_closes_every_socket_of_the_user_with_4003(
    app: FastAPI, client: AsyncClient, session: AsyncSession
) -> None:
    user, bystander = await make_user(session), await make_user(session)
    tokens = [await _token(client, user) for _ in range(2)]
    async with (
        ws_client(app) as http,
        open_socket(http, tokens[0]) as first,
        open_socket(http, tokens[1]) as second,
        open_socket(http, await _token(client, bystander)) as other,
    ):
        assert (await client.post("/auth/logout-all", headers=bearer(tokens[0]))).status_code == 204
        assert await close_code(first) == (4003, [])
        assert await close_code(second) == (4003, [])
        await assert_nothing_pending(other)


async def test_deactivation_closes_the_users_sockets_with_4003(
    app: FastAPI, client: AsyncClient, session: AsyncSession
) -> None:
    admin, user = await make_admin(session), await make_user(session)
    async with ws_client(app) as http, open_socket(http, await _token(client, user)) as ws:
        response = await client.patch(
            f"/users/{user.id}", json={"is_active": False}, headers=await login(client, admin)
        )
        assert response.status_code == 200
        assert await close_code(ws) == (4003, [])


async def test_a_password_change_closes_the_other_sessions_sockets_with_4003(
    app: FastAPI, client: AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    current, other = await _token(client, user), await _token(client, user)
    async with (
        ws_client(app) as http,
        open_socket(http, current) as kept,
        open_socket(http, other) as ended,
    ):
        response = await client.patch(
            "/users/me",
            json={"password": "a brand new password", "current_password": DEFAULT_PASSWORD},
            headers=bearer(current),
        )
        assert response.status_code == 200
        assert await close_code(ended) == (4003, [])
        await assert_nothing_pending(kept)


async def test_a_revocation_the_socket_was_not_told_about_closes_it_within_a_heartbeat(
    fast_app: FastAPI, client: AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    token = await _token(client, user)
    async with ws_client(fast_app) as http, open_socket(http, token) as ws:
        # Straight into the blocklist: no event is published, only the database knows.
        expires_at = utcnow() + fast_app.state.tokens.refresh_lifetime
        session.add(RevokedToken(id=claims_of(token)["sid"], expires_at=expires_at))
        await session.commit()
        assert await close_code(ws, within=1) == (4003, [])


# --- Database outage --------------------------------------------------------------------


def _database_down(*args: Any, **kwargs: Any) -> Any:
    raise OperationalError("SELECT", {}, ConnectionRefusedError("the database is down"))


async def test_a_socket_opened_while_the_database_is_down_closes_with_1013(
    app: FastAPI, client: AsyncClient, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = await _token(client, await make_user(session))
    monkeypatch.setattr(auth_service, "load_principal", _database_down)

    async with ws_client(app) as http, open_socket(http, token, ready=False) as ws:
        assert await close_code(ws) == (1013, [])


async def test_a_replay_the_database_cannot_answer_closes_with_1013(
    app: FastAPI, client: AsyncClient, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await make_user(session)
    token = await _token(client, user)
    monkeypatch.setattr(notification_service, "missed_since", _database_down)

    async with ws_client(app) as http, open_socket(http, token, since=0, ready=False) as ws:
        assert await close_code(ws) == (1013, [])
    await wait_until(lambda: not app.state.hub.connections_of(user.id))


async def test_a_heartbeat_that_cannot_reach_the_database_keeps_the_socket(
    fast_app: FastAPI,
    client: AsyncClient,
    session: AsyncSession,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = await _token(client, await make_user(session))
    async with ws_client(fast_app) as http, open_socket(http, token) as ws:
        monkeypatch.setattr(auth_service, "load_principal", _database_down)
        # Several heartbeats pass, each answered, none of them able to check the session.
        for _ in range(3):
            assert await receive(ws) == {"type": "ping"}
            await ws.send_json({"type": "pong"})
        await assert_nothing_pending(ws)
    assert "the heartbeat could not check the session" in caplog.text


# --- Connection manager and metrics ----------------------------------------------------


def _sample(text: str, name: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"{name} is not exported")


async def test_metrics_count_open_connections_and_delivered_notifications(
    app: FastAPI, client: AsyncClient, session: AsyncSession
) -> None:
    owner, assignee = await make_user(session), await make_user(session)
    token = await _token(client, assignee)
    async with ws_client(app) as http:
        before = (await http.get("/metrics")).text
        async with open_socket(http, token) as first, open_socket(http, token) as second:
            during = (await http.get("/metrics")).text
            await _assign_new_task(client, session, owner, assignee)
            for ws in (first, second):
                await receive_notifications(ws, 1)
                await assert_nothing_pending(ws)
        await wait_until(lambda: not app.state.hub.connections_of(assignee.id))
        after = (await http.get("/metrics")).text

    opened = "fasttrack_websocket_connections"
    delivered = "fasttrack_notifications_delivered_total"
    assert _sample(during, opened) == _sample(before, opened) + 2
    assert _sample(after, opened) == _sample(before, opened)
    assert _sample(after, delivered) == _sample(before, delivered) + 2


async def test_a_client_too_far_behind_is_closed_with_1013(
    app: FastAPI, client: AsyncClient, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_module, "OUTBOX_SIZE", 2)
    user = await make_user(session)
    hub: Hub = app.state.hub
    rows = [_stored(await session.get(Notification, row)) for row in await _store(session, user, 5)]
    async with ws_client(app) as http, open_socket(http, await _token(client, user)) as ws:
        await hub.publish(Effects(events=[notifications_event(rows)]))
        code, messages = await close_code(ws)

    assert code == 1013
    assert len(messages) <= 2


async def test_an_event_of_unknown_kind_is_ignored_and_logged(
    app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    hub: Hub = app.state.hub
    await hub._on_event({"kind": "gossip"})
    assert "ignored an event of unknown kind 'gossip'" in caplog.text


async def test_the_shutdown_of_the_app_closes_sockets_with_1001(
    app_factory: AppFactory, client: AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    token = await _token(client, user)
    async with app_factory(lifespan=False) as other:
        lifespan = other.router.lifespan_context(other)
        await lifespan.__aenter__()
        async with ws_client(other) as http, open_socket(http, token) as ws:
            await assert_nothing_pending(ws)
            await lifespan.__aexit__(None, None, None)
            assert await close_code(ws) == (1001, [])

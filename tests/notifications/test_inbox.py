"""The inbox (SPEC §5 Notifications): list, unread filter, pagination, marking read."""

from datetime import datetime

import pytest
from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.notifications.models import Notification, NotificationType
from fasttrack.users.models import User
from tests.factories import assert_problem, login, make_user


async def _store(session: AsyncSession, user: User, count: int) -> list[int]:
    assert user.id is not None
    rows = [
        Notification(user_id=user.id, type=NotificationType.task_assigned, data={"n": n})
        for n in range(count)
    ]
    session.add_all(rows)
    await session.commit()
    return [row.id for row in rows if row.id is not None]


async def _ids(client: AsyncClient, headers: dict[str, str], **params: str) -> list[int]:
    response = await client.get("/notifications", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


async def test_the_inbox_lists_only_the_callers_notifications_newest_first(
    client: AsyncClient, session: AsyncSession
) -> None:
    user, other = await make_user(session), await make_user(session)
    mine = await _store(session, user, 3)
    await _store(session, other, 2)

    response = await client.get("/notifications", headers=await login(client, user))

    assert response.status_code == 200
    body = response.json()
    assert [item["id"] for item in body["items"]] == mine[::-1]
    assert (body["next_cursor"], body["has_more"]) == (None, False)
    item = body["items"][0]
    assert item.keys() == {"id", "type", "data", "created_at", "read_at"}
    assert (item["type"], item["data"], item["read_at"]) == ("task_assigned", {"n": 2}, None)
    assert datetime.fromisoformat(item["created_at"]).utcoffset() is not None


async def test_the_unread_filter(client: AsyncClient, session: AsyncSession) -> None:
    user = await make_user(session)
    first, second, third = await _store(session, user, 3)
    headers = await login(client, user)
    assert (await client.post(f"/notifications/{second}/read", headers=headers)).status_code == 204

    assert await _ids(client, headers, unread="true") == [third, first]
    assert await _ids(client, headers, unread="false") == [second]
    assert await _ids(client, headers) == [third, second, first]


async def test_walking_the_pages_returns_every_notification_once_in_order(
    client: AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    stored = await _store(session, user, 7)
    headers = await login(client, user)

    seen: list[int] = []
    cursor: str | None = None
    for _ in range(10):
        params = {"limit": "3"} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/notifications", params=params, headers=headers)).json()
        seen += [item["id"] for item in page["items"]]
        assert page["has_more"] is (page["next_cursor"] is not None)
        cursor = page["next_cursor"]
        if cursor is None:
            break
        # Newer notifications arriving mid-walk belong before the cursor: not in this walk.
        await _store(session, user, 1)

    assert seen == stored[::-1]


@pytest.mark.parametrize("cursor", ["nonsense", "MTA.AAAAAAAAAAAAAAAA", "é"])
async def test_a_bad_cursor_is_a_422(
    client: AsyncClient, session: AsyncSession, cursor: str
) -> None:
    headers = await login(client, await make_user(session))

    response = await client.get("/notifications", params={"cursor": cursor}, headers=headers)

    assert_problem(response, 422, "invalid_cursor")


async def test_a_cursor_of_another_list_is_a_422(
    client: AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    headers = await login(client, user)
    for _ in range(2):
        assert (
            await client.post("/projects", json={"name": "P"}, headers=headers)
        ).status_code == 201
    cursor = (await client.get("/projects", params={"limit": 1}, headers=headers)).json()[
        "next_cursor"
    ]

    response = await client.get("/notifications", params={"cursor": cursor}, headers=headers)

    assert_problem(response, 422, "invalid_cursor")


@pytest.mark.parametrize("params", [{"limit": "0"}, {"limit": "101"}, {"unread": "maybe"}])
async def test_bad_list_parameters_are_a_422(
    client: AsyncClient, session: AsyncSession, params: dict[str, str]
) -> None:
    headers = await login(client, await make_user(session))

    response = await client.get("/notifications", params=params, headers=headers)

    assert_problem(response, 422, "validation_error")


async def test_marking_one_read_is_idempotent(client: AsyncClient, session: AsyncSession) -> None:
    user = await make_user(session)
    target, untouched = await _store(session, user, 2)
    headers = await login(client, user)

    first = await client.post(f"/notifications/{target}/read", headers=headers)
    read_at = (await client.get("/notifications", headers=headers)).json()["items"][1]["read_at"]
    again = await client.post(f"/notifications/{target}/read", headers=headers)

    assert (first.status_code, first.content) == (204, b"")
    assert again.status_code == 204
    items = {
        item["id"]: item
        for item in (await client.get("/notifications", headers=headers)).json()["items"]
    }
    assert read_at is not None
    assert items[target]["read_at"] == read_at  # the first reading stands
    assert items[untouched]["read_at"] is None


async def test_mark_all_read_marks_only_the_callers(
    client: AsyncClient, session: AsyncSession
) -> None:
    user, other = await make_user(session), await make_user(session)
    await _store(session, user, 3)
    await _store(session, other, 2)
    headers = await login(client, user)

    response = await client.post("/notifications/read-all", headers=headers)

    assert (response.status_code, response.content) == (204, b"")
    assert await _ids(client, headers, unread="true") == []
    assert len(await _ids(client, await login(client, other), unread="true")) == 2
    assert (await client.post("/notifications/read-all", headers=headers)).status_code == 204


@pytest.mark.parametrize("whose", ["another user's", "missing", "out of range"])
async def test_marking_a_notification_that_is_not_yours_is_a_404(
    client: AsyncClient, session: AsyncSession, whose: str
) -> None:
    user, other = await make_user(session), await make_user(session)
    (theirs,) = await _store(session, other, 1)
    target = {"another user's": theirs, "missing": theirs + 1000, "out of range": 2**63}[whose]

    response = await client.post(f"/notifications/{target}/read", headers=await login(client, user))

    if whose == "out of range":
        assert_problem(response, 422, "validation_error")
    else:
        assert_problem(response, 404, "not_found")
    unread = await _ids(client, await login(client, other), unread="true")
    assert unread == [theirs]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/notifications"),
        ("POST", "/notifications/1/read"),
        ("POST", "/notifications/read-all"),
    ],
)
@pytest.mark.parametrize("authorization", [None, "Bearer not-a-jwt"])
async def test_the_inbox_needs_authentication(
    client: AsyncClient, method: str, path: str, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}

    response = await client.request(method, path, headers=headers)

    assert_problem(response, 401, "not_authenticated" if authorization is None else "invalid_token")

"""User administration: GET /users, GET and PATCH /users/{id}."""

import asyncio
from typing import Any

import pytest
from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.core.db import MAX_ID
from fasttrack.users.models import Role
from tests.factories import (
    assert_problem,
    bearer,
    login,
    make_admin,
    make_user,
    token_pair,
)


async def walk(
    client: AsyncClient, headers: dict[str, str], **params: Any
) -> tuple[list[dict[str, Any]], int]:
    """Every item of GET /users, page by page; also the number of pages."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/users", headers=headers, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        pages += 1
        items.extend(page["items"])
        assert page["has_more"] is (page["next_cursor"] is not None)
        if not page["has_more"]:
            return items, pages
        cursor = page["next_cursor"]


@pytest.mark.parametrize(
    "route", [("GET", "/users"), ("GET", "/users/{id}"), ("PATCH", "/users/{id}")], ids=" ".join
)
@pytest.mark.parametrize(
    ("caller", "expected"),
    [("anonymous", (401, "not_authenticated")), ("user", (403, "forbidden")), ("admin", (200, ""))],
    ids=["anonymous", "user", "admin"],
)
async def test_only_admins_administer_users(
    client: AsyncClient,
    session: AsyncSession,
    route: tuple[str, str],
    caller: str,
    expected: tuple[int, str],
) -> None:
    method, path = route
    admin, target = await make_admin(session), await make_user(session, display_name="Target")
    user = await make_user(session)
    headers = {
        "anonymous": {},
        "user": await login(client, user),
        "admin": await login(client, admin),
    }
    body = {"display_name": "Renamed"} if method == "PATCH" else None

    response = await client.request(
        method, path.format(id=target.id), headers=headers[caller], json=body
    )

    status, code = expected
    if status == 200:
        assert response.status_code == status
    else:
        assert_problem(response, status, code)
        # A refused PATCH changed nothing.
        seen = await client.get(f"/users/{target.id}", headers=headers["admin"])
        assert seen.json()["display_name"] == "Target"


async def test_list_users_pages_by_20_oldest_first(
    client: AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    created = [admin] + [await make_user(session) for _ in range(24)]
    headers = await login(client, admin)

    first = (await client.get("/users", headers=headers)).json()

    assert [item["id"] for item in first["items"]] == [user.id for user in created[:20]]
    assert first["has_more"] is True
    second = await client.get("/users", headers=headers, params={"cursor": first["next_cursor"]})
    assert [item["id"] for item in second.json()["items"]] == [user.id for user in created[20:]]
    assert (second.json()["has_more"], second.json()["next_cursor"]) == (False, None)


async def test_walking_the_list_returns_every_user_once(
    client: AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    ids = [admin.id] + [(await make_user(session)).id for _ in range(20)]

    items, pages = await walk(client, await login(client, admin), limit=7)

    assert [item["id"] for item in items] == ids
    assert pages == 3


async def test_a_walk_sees_rows_that_existed_throughout_despite_changes(
    client: AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    users = [await make_user(session) for _ in range(6)]
    headers = await login(client, admin)
    first = (await client.get("/users", headers=headers, params={"limit": 3})).json()
    # Between pages: one already-seen row goes away, a new row arrives.
    await session.delete(users[0])
    await session.commit()
    newcomer = await make_user(session)

    rest, _ = await walk(client, headers, limit=3, cursor=first["next_cursor"])

    seen = [item["id"] for item in first["items"] + rest]
    assert seen == [admin.id] + [user.id for user in users] + [newcomer.id]


@pytest.mark.parametrize(
    ("filters", "role", "active"),
    [
        ({"role": "admin"}, Role.admin, None),
        ({"role": "user"}, Role.user, None),
        ({"is_active": "false"}, None, False),
        ({"is_active": "true", "role": "admin"}, Role.admin, True),
    ],
    ids=["admins", "users", "inactive", "active admins"],
)
async def test_filters_hold_on_every_page(
    client: AsyncClient,
    session: AsyncSession,
    filters: dict[str, str],
    role: Role | None,
    active: bool | None,
) -> None:
    admin = await make_admin(session)
    people = [admin] + [
        await make_user(session, role=Role.admin if n % 3 == 0 else Role.user, is_active=n % 4 != 0)
        for n in range(1, 25)
    ]
    expected = [
        person.id
        for person in people
        if role in (None, person.role) and active in (None, person.is_active)
    ]

    items, pages = await walk(client, await login(client, admin), limit=2, **filters)

    assert [item["id"] for item in items] == expected
    assert pages == max(1, -(-len(expected) // 2))


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 101},
        {"limit": -1},
        {"limit": "ten"},
        {"role": "owner"},
        {"is_active": "maybe"},
    ],
)
async def test_invalid_list_parameters_are_a_validation_problem(
    client: AsyncClient, session: AsyncSession, params: dict[str, Any]
) -> None:
    admin = await make_admin(session)
    response = await client.get("/users", headers=await login(client, admin), params=params)
    assert_problem(response, 422, "validation_error")


@pytest.mark.parametrize("cursor", ["x" * 201, "not-a-cursor"])
async def test_a_bad_cursor_is_an_invalid_cursor_problem(
    client: AsyncClient, session: AsyncSession, cursor: str
) -> None:
    admin = await make_admin(session)
    response = await client.get(
        "/users", headers=await login(client, admin), params={"cursor": cursor}
    )
    assert_problem(response, 422, "invalid_cursor")


async def test_the_largest_page_is_100(client: AsyncClient, session: AsyncSession) -> None:
    admin = await make_admin(session)
    response = await client.get("/users", headers=await login(client, admin), params={"limit": 100})
    assert response.status_code == 200
    body = response.json()
    assert (len(body["items"]), body["next_cursor"], body["has_more"]) == (1, None, False)


def _tamper(cursor: str) -> list[str]:
    payload, _, mac = cursor.partition(".")
    other = "A" if mac[0] != "A" else "B"
    return [
        f"{payload}.{other}{mac[1:]}",
        f"{payload[::-1]}.{mac}",
        payload,
        f"{cursor}x",
        "not-a-cursor",
        "",
        ".",
        "é.é",
        f"{payload}.{mac[:-1]}é",
    ]


async def test_a_tampered_cursor_is_refused(client: AsyncClient, session: AsyncSession) -> None:
    admin = await make_admin(session)
    for _ in range(3):
        await make_user(session)
    headers = await login(client, admin)
    cursor = (await client.get("/users", headers=headers, params={"limit": 1})).json()[
        "next_cursor"
    ]

    for tampered in _tamper(cursor):
        response = await client.get("/users", headers=headers, params={"cursor": tampered})
        assert_problem(response, 422, "invalid_cursor")


async def test_get_user_by_id(client: AsyncClient, session: AsyncSession) -> None:
    admin, user = await make_admin(session), await make_user(session, display_name="Ada")
    response = await client.get(f"/users/{user.id}", headers=await login(client, admin))
    assert response.status_code == 200
    assert (response.json()["id"], response.json()["display_name"]) == (user.id, "Ada")


@pytest.mark.parametrize("method", ["GET", "PATCH"])
async def test_a_missing_user_is_not_found(
    client: AsyncClient, session: AsyncSession, method: str
) -> None:
    admin = await make_admin(session)
    response = await client.request(
        method, f"/users/{MAX_ID}", headers=await login(client, admin), json={}
    )
    assert_problem(response, 404, "not_found")


@pytest.mark.parametrize("user_id", ["0", "-1", str(MAX_ID + 1), "9" * 25, "abc", "1.5"])
async def test_an_id_that_cannot_exist_is_a_validation_problem(
    client: AsyncClient, session: AsyncSession, user_id: str
) -> None:
    admin = await make_admin(session)
    response = await client.get(f"/users/{user_id}", headers=await login(client, admin))
    assert_problem(response, 422, "validation_error")


async def test_an_admin_updates_name_role_and_activity(
    client: AsyncClient, session: AsyncSession
) -> None:
    admin, user = await make_admin(session), await make_user(session)
    headers = await login(client, admin)

    response = await client.patch(
        f"/users/{user.id}", headers=headers, json={"display_name": "Grace", "role": "admin"}
    )

    assert response.status_code == 200
    assert (response.json()["display_name"], response.json()["role"]) == ("Grace", "admin")
    # The promotion applies at once: the user may now administer.
    assert (await client.get("/users", headers=await login(client, user))).status_code == 200
    again = await client.patch(f"/users/{user.id}", headers=headers, json={"is_active": False})
    assert (again.json()["is_active"], again.json()["role"]) == (False, "admin")


@pytest.mark.parametrize(
    "changes",
    [
        {"role": None},
        {"is_active": None},
        {"display_name": None},
        {"role": "owner"},
        {"email": "new@example.com"},
        {"password": "a new password"},
        {"is_active": "sometimes"},
    ],
)
async def test_an_invalid_admin_update_is_a_validation_problem(
    client: AsyncClient, session: AsyncSession, changes: dict[str, Any]
) -> None:
    admin, user = await make_admin(session), await make_user(session)
    response = await client.patch(
        f"/users/{user.id}", headers=await login(client, admin), json=changes
    )
    assert_problem(response, 422, "validation_error")


@pytest.mark.parametrize("changes", [{"role": "user"}, {"is_active": False}])
async def test_the_last_active_admin_cannot_be_demoted_or_deactivated(
    client: AsyncClient, session: AsyncSession, changes: dict[str, Any]
) -> None:
    admin = await make_admin(session)
    await make_admin(session, is_active=False)  # an inactive admin does not count
    await make_user(session)
    headers = await login(client, admin)

    response = await client.patch(f"/users/{admin.id}", headers=headers, json=changes)

    assert_problem(response, 409, "last_admin")
    me = (await client.get("/users/me", headers=headers)).json()
    assert (me["role"], me["is_active"]) == ("admin", True)


@pytest.mark.parametrize("changes", [{"role": "user"}, {"is_active": False}])
async def test_an_admin_may_step_down_while_another_admin_is_active(
    client: AsyncClient, session: AsyncSession, changes: dict[str, Any]
) -> None:
    admin, other = await make_admin(session), await make_admin(session)
    headers, others = await login(client, admin), await login(client, other)

    response = await client.patch(f"/users/{admin.id}", headers=headers, json=changes)

    assert response.status_code == 200
    # Now `other` is the last one, and is protected in turn.
    last = await client.patch(f"/users/{other.id}", headers=others, json=changes)
    assert_problem(last, 409, "last_admin")


async def test_the_last_admin_may_still_be_renamed(
    client: AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    response = await client.patch(
        f"/users/{admin.id}",
        headers=await login(client, admin),
        json={"display_name": "Root", "role": "admin", "is_active": True},
    )
    assert response.status_code == 200
    assert response.json()["display_name"] == "Root"


async def test_deactivation_ends_the_users_sessions_at_once(
    client: AsyncClient, session: AsyncSession
) -> None:
    admin, user = await make_admin(session), await make_user(session)
    headers = await login(client, admin)
    pair = await token_pair(client, user)

    deactivated = await client.patch(
        f"/users/{user.id}", headers=headers, json={"is_active": False}
    )

    assert deactivated.status_code == 200
    stale = await client.get("/users/me", headers=bearer(pair["access_token"]))
    assert_problem(stale, 401, "invalid_token")
    refused = await client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert_problem(refused, 401, "invalid_token")
    # Reactivation does not revive the tokens issued before; a new login works.
    await client.patch(f"/users/{user.id}", headers=headers, json={"is_active": True})
    revived = await client.get("/users/me", headers=bearer(pair["access_token"]))
    assert_problem(revived, 401, "token_revoked")
    assert (await client.get("/users/me", headers=await login(client, user))).is_success


async def test_a_demotion_applies_to_a_live_token_at_once(
    client: AsyncClient, session: AsyncSession
) -> None:
    admin, demoted = await make_admin(session), await make_admin(session)
    headers, demoted_headers = await login(client, admin), await login(client, demoted)
    assert (await client.get("/users", headers=demoted_headers)).status_code == 200

    await client.patch(f"/users/{demoted.id}", headers=headers, json={"role": "user"})

    assert_problem(await client.get("/users", headers=demoted_headers), 403, "forbidden")
    me = await client.get("/users/me", headers=demoted_headers)
    assert me.json()["role"] == "user"


async def test_a_promotion_needs_no_new_login(client: AsyncClient, session: AsyncSession) -> None:
    admin, user = await make_admin(session), await make_user(session)
    user_headers = await login(client, user)
    assert_problem(await client.get("/users", headers=user_headers), 403, "forbidden")

    await client.patch(
        f"/users/{user.id}", headers=await login(client, admin), json={"role": "admin"}
    )

    assert (await client.get("/users", headers=user_headers)).status_code == 200


async def test_two_admins_demoting_each_other_at_once_leave_one_admin(
    client: AsyncClient, session: AsyncSession
) -> None:
    first, second = await make_admin(session), await make_admin(session)
    first_headers, second_headers = await login(client, first), await login(client, second)

    responses = await asyncio.gather(
        client.patch(f"/users/{second.id}", headers=first_headers, json={"role": "user"}),
        client.patch(f"/users/{first.id}", headers=second_headers, json={"role": "user"}),
    )

    # The loser was either no longer an admin (403) or would have removed the last (409).
    assert sorted(response.status_code for response in responses) in ([200, 403], [200, 409])
    survivors = [
        (await client.get("/users/me", headers=headers)).json()["role"]
        for headers in (first_headers, second_headers)
    ]
    assert sorted(survivors) == ["admin", "user"]

"""Column types and helpers every table shares."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from httpx import AsyncClient
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DBAPIError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.auth.models import RevokedToken
from fasttrack.core.db import UTCDateTime, insert_ignoring_duplicates, utcnow
from fasttrack.users.models import User
from tests.factories import login, make_user

DIALECT = sqlite.dialect()
PLUS_TWO = timezone(timedelta(hours=2))


def test_utcnow_is_aware() -> None:
    assert utcnow().tzinfo is UTC


def test_a_naive_datetime_is_never_stored() -> None:
    with pytest.raises(ValueError, match="naive"):
        UTCDateTime().process_bind_param(datetime(2026, 1, 2, 3, 4, 5), DIALECT)


def test_an_aware_datetime_is_stored_as_utc() -> None:
    stored = UTCDateTime().process_bind_param(
        datetime(2026, 1, 2, 5, 4, 5, tzinfo=PLUS_TWO), DIALECT
    )
    assert stored == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert stored is not None
    assert stored.tzinfo is UTC


@pytest.mark.parametrize(
    "loaded",
    [datetime(2026, 1, 2, 3, 4, 5), datetime(2026, 1, 2, 5, 4, 5, tzinfo=PLUS_TWO)],
    ids=["naive, as SQLite returns", "aware, as PostgreSQL returns"],
)
def test_a_loaded_datetime_is_aware_utc(loaded: datetime) -> None:
    value = UTCDateTime().process_result_value(loaded, DIALECT)
    assert value == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert value is not None
    assert value.tzinfo is UTC


def test_null_passes_through() -> None:
    assert UTCDateTime().process_bind_param(None, DIALECT) is None
    assert UTCDateTime().process_result_value(None, DIALECT) is None


async def test_timestamps_come_back_from_the_database_aware_and_exact(
    session: AsyncSession,
) -> None:
    user = await make_user(session)
    assert user.id is not None
    statement = select(User.created_at).where(col(User.id) == user.id)
    loaded = (await session.exec(statement)).one()
    assert loaded.tzinfo is UTC
    assert loaded == user.created_at


async def test_insert_ignoring_duplicates_skips_existing_keys(session: AsyncSession) -> None:
    expires_at = utcnow() + timedelta(hours=1)
    await insert_ignoring_duplicates(session, RevokedToken, [{"id": "a", "expires_at": expires_at}])
    await insert_ignoring_duplicates(
        session,
        RevokedToken,
        [{"id": "a", "expires_at": expires_at}, {"id": "b", "expires_at": expires_at}],
    )
    await insert_ignoring_duplicates(session, RevokedToken, [])
    await session.commit()
    assert sorted((await session.exec(select(RevokedToken.id))).all()) == ["a", "b"]


async def test_a_failed_rollback_on_a_lost_connection_keeps_the_answer(
    client: AsyncClient, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = await login(client, await make_user(session))
    close = AsyncSession.close

    async def close_on_a_lost_connection(self: AsyncSession) -> None:
        await close(self)
        # What the rollback of a connection the database just dropped raises.
        raise DBAPIError("ROLLBACK", None, ConnectionResetError(), connection_invalidated=True)

    monkeypatch.setattr(AsyncSession, "close", close_on_a_lost_connection)
    response = await client.get("/users/me", headers=headers)
    monkeypatch.undo()

    assert response.status_code == 200

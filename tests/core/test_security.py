"""Password hashing: correct, and never on the event loop."""

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import bcrypt
import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.core.security import PasswordHasher
from tests.factories import DEFAULT_PASSWORD, make_user


@pytest.fixture
async def hasher() -> AsyncIterator[PasswordHasher]:
    password_hasher = PasswordHasher(rounds=4, workers=1)
    yield password_hasher
    password_hasher.close()


async def test_a_hash_verifies_its_password_only(hasher: PasswordHasher) -> None:
    hashed = await hasher.hash("correct horse")
    assert hashed.startswith("$2b$04$")
    assert await hasher.verify("correct horse", hashed)
    assert not await hasher.verify("correct horsE", hashed)


async def test_hashes_are_salted(hasher: PasswordHasher) -> None:
    assert await hasher.hash("same password") != await hasher.hash("same password")


async def test_the_dummy_verification_is_prepared_once(hasher: PasswordHasher) -> None:
    calls: list[str] = []
    real_hashpw = bcrypt.hashpw

    def counting_hashpw(password: bytes, salt: bytes) -> bytes:
        calls.append("hashpw")
        return real_hashpw(password, salt)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bcrypt, "hashpw", counting_hashpw)
        await hasher.verify_against_dummy("whatever")
        await hasher.verify_against_dummy("whatever else")

    assert calls == ["hashpw"]


def _recording(function: Callable[..., Any], threads: list[str]) -> Callable[..., Any]:
    def wrapper(*args: Any) -> Any:
        threads.append(threading.current_thread().name)
        return function(*args)

    return wrapper


async def test_register_and_login_hash_in_the_bcrypt_pool(
    client: AsyncClient, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await make_user(session)
    threads: list[str] = []
    monkeypatch.setattr(bcrypt, "hashpw", _recording(bcrypt.hashpw, threads))
    monkeypatch.setattr(bcrypt, "checkpw", _recording(bcrypt.checkpw, threads))

    registered = await client.post(
        "/auth/register", json={"email": "new@example.com", "password": DEFAULT_PASSWORD}
    )
    known = await client.post("/auth/login", json={"email": user.email, "password": "wrong!!!"})
    unknown = await client.post(
        "/auth/login", json={"email": "nobody@example.com", "password": "wrong!!!"}
    )

    assert [registered.status_code, known.status_code, unknown.status_code] == [201, 401, 401]
    assert len(threads) >= 3
    assert all(name.startswith("bcrypt") for name in threads), threads


@pytest.mark.parametrize("case", ["wrong password", "unknown email"])
async def test_every_failed_login_costs_one_bcrypt_check(
    client: AsyncClient, session: AsyncSession, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    # What keeps the two failures alike in timing: an unknown address is checked against
    # a dummy hash instead of answering at once.
    user = await make_user(session)
    await client.post("/auth/login", json={"email": "warm@example.com", "password": "up up up"})
    checks: list[str] = []
    monkeypatch.setattr(bcrypt, "checkpw", _recording(bcrypt.checkpw, checks))
    email = user.email if case == "wrong password" else "nobody@example.com"

    response = await client.post("/auth/login", json={"email": email, "password": "not it!!"})

    assert response.status_code == 401
    assert len(checks) == 1


async def test_other_requests_are_served_while_a_password_is_checked(
    app: FastAPI, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The login's bcrypt call is held until /health has answered. Were bcrypt running on
    # the event loop, /health could not be served meanwhile and the login would fail.
    user = await make_user(session)
    checking, health_answered = threading.Event(), threading.Event()
    real_checkpw = bcrypt.checkpw

    def blocking_checkpw(password: bytes, hashed: bytes) -> bool:
        checking.set()
        if not health_answered.wait(timeout=5):
            raise RuntimeError("the event loop was blocked")
        return real_checkpw(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", blocking_checkpw)
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as http:
        login = asyncio.create_task(
            http.post(
                "/api/v1/auth/login", json={"email": user.email, "password": DEFAULT_PASSWORD}
            )
        )
        assert await asyncio.to_thread(checking.wait, 5)
        health = await http.get("/health")
        health_answered.set()
        assert health.status_code == 200
        assert (await login).status_code == 200

"""One table of token attacks, refused alike by both transports: a 401 problem on HTTP,
close code 4001 on the WebSocket. tests/auth covers the finer points of verification; this
table is about every way in being shut on every door."""

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode

import pytest
from fastapi import FastAPI
from httpx import AsyncClient, Response
from httpx_ws import AsyncWebSocketSession, WebSocketDisconnect, aconnect_ws
from httpx_ws.transport import ASGIWebSocketTransport
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.auth.models import RevokedToken
from fasttrack.core.db import utcnow
from fasttrack.notifications.hub import CloseCode
from fasttrack.users.models import User
from tests.factories import (
    TEST_SECRET,
    assert_problem,
    bearer,
    claims_of,
    make_user,
    sign,
    token_claims,
    token_pair,
)

NOW: Final = int(time.time())
# What an RS256 verifier would hold; an HS256 verifier fed it as "the key" is the
# classic algorithm-confusion attack.
PUBLIC_KEY_PEM: Final = (
    "-----BEGIN PUBLIC KEY-----\n"
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo\n"
    "4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u\n"
    "+qKhbwKfBstIs+bMY2Zkp18gnTxKLxoS2tFczGkPLPgizskuemMghRniWaoLcyeh\n"
    "kd3qqGElvW/VDL5AaWTg0nLVkjRo9z+40RQzuVaE8AkAFmxZzow3x+VJYKdjykkJ\n"
    "0iT9wCS0DRTXu269V264Vf/3jvredZiKRkgwlL9xNAwxXFg0x/XFw005UWVRIkdg\n"
    "cKWTjpBP2dPwVZ4WWC+9aGVd+Gyn1o0CLelf4rEjGoXbAAEgAqeGUxrcIlbjXfbc\n"
    "mwIDAQAB\n"
    "-----END PUBLIC KEY-----\n"
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _encoded(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"


def _hmac_signed(header: dict[str, Any], claims: dict[str, Any], key: str) -> str:
    signing_input = _encoded(header, claims)
    mac = hmac.digest(key.encode(), signing_input.encode(), hashlib.sha256)
    return f"{signing_input}.{_b64(mac)}"


@dataclass
class Scene:
    app: FastAPI
    client: AsyncClient
    session: AsyncSession
    user: User

    async def login(self) -> dict[str, Any]:
        return await token_pair(self.client, self.user)

    async def refresh(self, refresh_token: str) -> Response:
        return await self.client.post("/auth/refresh", json={"refresh_token": refresh_token})


@dataclass(frozen=True)
class Attack:
    """`forge` returns the token to present; `use` is where: as an access token (GET
    /users/me and the WebSocket) or as a refresh token (POST /auth/refresh)."""

    forge: Callable[[Scene], Awaitable[str]]
    code: str = "invalid_token"
    use: str = "access"


def forged(make: Callable[[dict[str, Any]], str], **kwargs: Any) -> Attack:
    """A token made by `make` from claims the API would accept for the scene's user."""

    async def forge(scene: Scene) -> str:
        return make(token_claims(scene.user))

    return Attack(forge, **kwargs)


def claims(**overrides: Any) -> Attack:
    return forged(lambda valid: sign({**valid, **overrides}))


def without(name: str) -> Attack:
    return forged(lambda valid: sign({key: value for key, value in valid.items() if key != name}))


async def _deleted_user(scene: Scene) -> str:
    token: str = (await scene.login())["access_token"]
    await scene.session.delete(scene.user)
    await scene.session.commit()
    return token


async def _deactivated_user(scene: Scene) -> str:
    token: str = (await scene.login())["access_token"]
    scene.user.is_active = False
    scene.session.add(scene.user)
    await scene.session.commit()
    return token


async def _revoked_jti(scene: Scene) -> str:
    token: str = (await scene.login())["access_token"]
    scene.session.add(RevokedToken(id=claims_of(token)["jti"], expires_at=utcnow()))
    await scene.session.commit()
    return token


async def _after_logout(scene: Scene) -> str:
    token: str = (await scene.login())["access_token"]
    assert (await scene.client.post("/auth/logout", headers=bearer(token))).status_code == 204
    return token


async def _refresh_after_logout(scene: Scene) -> str:
    pair = await scene.login()
    logout = await scene.client.post("/auth/logout", headers=bearer(pair["access_token"]))
    assert logout.status_code == 204
    token: str = pair["refresh_token"]
    return token


async def _other_session_after_logout_all(scene: Scene) -> str:
    token: str = (await scene.login())["access_token"]
    current = (await scene.login())["access_token"]
    everywhere = await scene.client.post("/auth/logout-all", headers=bearer(current))
    assert everywhere.status_code == 204
    return token


async def _reused_refresh_token(scene: Scene) -> str:
    token: str = (await scene.login())["refresh_token"]
    assert (await scene.refresh(token)).status_code == 200
    return token


async def _access_token_of_a_reused_session(scene: Scene) -> str:
    # The pair the rotation handed out dies with its session once the old token comes back.
    old = (await scene.login())["refresh_token"]
    rotated = await scene.refresh(old)
    assert rotated.status_code == 200
    assert_problem(await scene.refresh(old), 401, "token_revoked")
    token: str = rotated.json()["access_token"]
    return token


async def _refresh_token(scene: Scene) -> str:
    token: str = (await scene.login())["refresh_token"]
    return token


async def _access_token(scene: Scene) -> str:
    token: str = (await scene.login())["access_token"]
    return token


async def _constant(token: str) -> str:
    return token


ATTACKS: Final[dict[str, Attack]] = {
    "alg none": forged(lambda valid: f"{_encoded({'alg': 'none', 'typ': 'JWT'}, valid)}."),
    "alg None with our HMAC": forged(
        lambda valid: _hmac_signed({"alg": "None", "typ": "JWT"}, valid, TEST_SECRET)
    ),
    "RS256 header over our HMAC": forged(
        lambda valid: _hmac_signed({"alg": "RS256", "typ": "JWT"}, valid, TEST_SECRET)
    ),
    "RS256 header over a 2048-bit signature": forged(
        lambda valid: f"{_encoded({'alg': 'RS256', 'typ': 'JWT'}, valid)}.{_b64(bytes(256))}"
    ),
    "HS256 keyed with an RSA public key": forged(
        lambda valid: _hmac_signed({"alg": "HS256", "typ": "JWT"}, valid, PUBLIC_KEY_PEM)
    ),
    "wrong secret": forged(lambda valid: sign(valid, key="a-different-secret-of-enough-length")),
    "wrong issuer": claims(iss="https://issuer.example.com"),
    "wrong audience": claims(aud="another-api"),
    "expired": Attack(claims(iat=NOW - 3600, exp=NOW - 60).forge, code="token_expired"),
    "not valid before a future nbf": claims(nbf=NOW + 3600),
    "issued in the future": claims(iat=NOW + 3600),
    **{
        f"no {name}": without(name)
        for name in ("sub", "type", "jti", "sid", "iat", "exp", "iss", "aud")
    },
    "sub not numeric": claims(sub="admin"),
    "sub negative": claims(sub="-1"),
    "deleted user": Attack(_deleted_user),
    "deactivated user": Attack(_deactivated_user),
    "revoked jti": Attack(_revoked_jti, code="token_revoked"),
    "after logout": Attack(_after_logout, code="token_revoked"),
    "another session after logout-all": Attack(
        _other_session_after_logout_all, code="token_revoked"
    ),
    "session revoked by refresh token reuse": Attack(
        _access_token_of_a_reused_session, code="token_revoked"
    ),
    "refresh token as access token": Attack(_refresh_token),
    "garbage": Attack(lambda _: _constant("not.a.jwt")),
    "too long": Attack(lambda _: _constant("e" * 5000)),
    "empty": Attack(lambda _: _constant(""), code="not_authenticated"),
    # Refresh tokens: refused by POST /auth/refresh (never accepted by the WebSocket).
    "rotated refresh token reused": Attack(
        _reused_refresh_token, code="token_revoked", use="refresh"
    ),
    "refresh token after logout": Attack(
        _refresh_after_logout, code="token_revoked", use="refresh"
    ),
    "access token as refresh token": Attack(_access_token, use="refresh"),
    "forged refresh token": Attack(
        lambda scene: _constant(sign(token_claims(scene.user, kind="refresh"), key="x" * 40)),
        use="refresh",
    ),
}
ACCESS_ATTACKS: Final = [name for name, attack in ATTACKS.items() if attack.use == "access"]


@pytest.fixture
async def scene(app: FastAPI, client: AsyncClient, session: AsyncSession) -> Scene:
    return Scene(app=app, client=client, session=session, user=await make_user(session))


@asynccontextmanager
async def connected(app: FastAPI, token: str) -> AsyncIterator[AsyncWebSocketSession]:
    """GET /ws?token=…, in-process."""
    url = f"/ws?{urlencode({'token': token})}"
    async with (
        ASGIWebSocketTransport(app=app) as transport,
        AsyncClient(transport=transport, base_url="http://test") as client,
        aconnect_ws(url, client, session_class=AsyncWebSocketSession) as websocket,
    ):
        yield websocket


async def close_code(app: FastAPI, token: str) -> int:
    """Open the socket with `token` and return the code the server closes it with."""
    async with connected(app, token) as websocket:
        try:
            await websocket.send_json({"type": "ping"})
            message = await websocket.receive_json(timeout=5)
        except WebSocketDisconnect as closed:
            return closed.code
        pytest.fail(f"the socket stayed open and answered {message}")


@pytest.mark.parametrize("name", ATTACKS)
async def test_an_attack_is_refused_over_http(scene: Scene, name: str) -> None:
    attack = ATTACKS[name]
    token = await attack.forge(scene)

    if attack.use == "access":
        response = await scene.client.get("/users/me", headers=bearer(token))
    else:
        response = await scene.refresh(token)

    assert_problem(response, 401, attack.code)


@pytest.mark.parametrize("name", ACCESS_ATTACKS)
async def test_an_attack_is_refused_over_the_websocket(scene: Scene, name: str) -> None:
    token = await ATTACKS[name].forge(scene)

    assert await close_code(scene.app, token) == CloseCode.INVALID_TOKEN


async def test_the_baseline_token_is_accepted_by_both_transports(scene: Scene) -> None:
    # Without an attack, the same harness lets the caller in: the refusals above are real.
    token = (await scene.login())["access_token"]
    assert (await scene.client.get("/users/me", headers=bearer(token))).status_code == 200
    async with connected(scene.app, token) as websocket:
        await websocket.send_json({"type": "ping"})
        assert await websocket.receive_json(timeout=5) == {"type": "pong"}

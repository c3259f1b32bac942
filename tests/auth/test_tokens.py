"""Token verification: every forged, stale or misused token is a 401 problem."""

import base64
import hashlib
import hmac
import json
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from httpx import AsyncClient
from jwt.warnings import InsecureKeyLengthWarning
from pydantic import SecretStr
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.auth.tokens import VERIFIED_CACHE_SIZE, TokenService, TokenType
from fasttrack.core.config import Settings
from fasttrack.core.db import MAX_ID
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

Forge = Callable[[dict[str, Any]], str]
NOW = int(time.time())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signing_input(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"


def _unsigned(claims: dict[str, Any]) -> str:
    return f"{_signing_input({'alg': 'none', 'typ': 'JWT'}, claims)}."


def _hmac_signed(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """A token whose header says anything, with an HMAC-SHA256 signature by our key."""
    signing_input = _signing_input(header, claims)
    mac = hmac.digest(TEST_SECRET.encode(), signing_input.encode(), hashlib.sha256)
    return f"{signing_input}.{_b64(mac)}"


def _with(**overrides: Any) -> Forge:
    return lambda claims: sign({**claims, **overrides})


def _without(name: str) -> Forge:
    return lambda claims: sign({key: value for key, value in claims.items() if key != name})


def _tampered_signature(claims: dict[str, Any]) -> str:
    header, payload, signature = sign(claims).split(".")
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    return f"{header}.{payload}.{signature[:middle]}{flipped}{signature[middle + 1 :]}"


def _tampered_payload(claims: dict[str, Any]) -> str:
    # A longer life: claims that would be accepted, were the signature not checked.
    header, _, signature = sign(claims).split(".")
    payload = _b64(json.dumps({**claims, "exp": claims["exp"] + 3600}).encode())
    return f"{header}.{payload}.{signature}"


def _hs512(claims: dict[str, Any]) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)  # weak for HS512; irrelevant
        return sign(claims, algorithm="HS512")


def _other_type(claims: dict[str, Any]) -> str:
    return sign({**claims, "type": "refresh" if claims["type"] == "access" else "access"})


# (forger, code): each forger receives the claims of a token that would be accepted.
ATTACKS: dict[str, tuple[Forge, str]] = {
    "alg none": (_unsigned, "invalid_token"),
    "alg none with our signature": (
        lambda claims: _hmac_signed({"alg": "none", "typ": "JWT"}, claims),
        "invalid_token",
    ),
    "wrong key": (
        lambda claims: sign(claims, key="another-secret-key-that-is-long-enough"),
        "invalid_token",
    ),
    "HS512 with our key": (_hs512, "invalid_token"),
    "RS256 header over an HMAC signature": (
        lambda claims: _hmac_signed({"alg": "RS256", "typ": "JWT"}, claims),
        "invalid_token",
    ),
    "tampered signature": (_tampered_signature, "invalid_token"),
    "tampered payload": (_tampered_payload, "invalid_token"),
    "not a JWT": (lambda _: "not-a-jwt", "invalid_token"),
    "expired": (_with(iat=NOW - 3600, exp=NOW - 60), "token_expired"),
    "nbf in the future": (_with(nbf=NOW + 3600), "invalid_token"),
    "iat in the future": (_with(iat=NOW + 3600), "invalid_token"),
    "exp beyond any date": (_with(exp=10**15), "invalid_token"),
    "wrong issuer": (_with(iss="someone-else"), "invalid_token"),
    "wrong audience": (_with(aud="another-api"), "invalid_token"),
    "other token type": (_other_type, "invalid_token"),
    "unknown token type": (_with(type="id"), "invalid_token"),
    "sub not numeric": (_with(sub="admin"), "invalid_token"),
    "sub not a string": (_with(sub=1), "invalid_token"),
    "sub with padding": (
        lambda claims: sign({**claims, "sub": f" {claims['sub']} "}),
        "invalid_token",
    ),
    "sub of no user": (_with(sub=str(MAX_ID)), "invalid_token"),
    "sub beyond 32 bits": (_with(sub=str(MAX_ID + 1)), "invalid_token"),
    "sub beyond 64 bits": (_with(sub="9" * 30), "invalid_token"),
    "jti too long": (_with(jti="j" * 37), "invalid_token"),
    "jti not a string": (_with(jti=7), "invalid_token"),
    "sid empty": (_with(sid=""), "invalid_token"),
    **{
        f"no {claim}": (_without(claim), "invalid_token")
        for claim in ("sub", "type", "jti", "sid", "iat", "exp", "iss", "aud")
    },
}


@pytest.mark.parametrize("attack", ATTACKS)
async def test_a_forged_or_stale_access_token_is_refused(
    client: AsyncClient, session: AsyncSession, attack: str
) -> None:
    user = await make_user(session)
    forge, code = ATTACKS[attack]
    token = forge(token_claims(user, kind="access"))

    response = await client.get("/users/me", headers=bearer(token))

    assert_problem(response, 401, code)


@pytest.mark.parametrize("attack", ATTACKS)
async def test_a_forged_or_stale_refresh_token_is_refused(
    client: AsyncClient, session: AsyncSession, attack: str
) -> None:
    user = await make_user(session)
    forge, code = ATTACKS[attack]
    token = forge(token_claims(user, kind="refresh"))

    response = await client.post("/auth/refresh", json={"refresh_token": token})

    assert_problem(response, 401, code)


async def test_the_unforged_claims_are_accepted(client: AsyncClient, session: AsyncSession) -> None:
    # The baseline of the attack table: without an attack, the same claims work.
    user = await make_user(session)
    response = await client.get("/users/me", headers=bearer(sign(token_claims(user))))
    assert response.status_code == 200
    assert response.json()["id"] == user.id


async def test_a_forged_refresh_token_naming_a_live_session_does_not_end_it(
    client: AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    pair = await token_pair(client, user)
    real = claims_of(pair["refresh_token"])
    forged = sign(real, key="another-secret-key-that-is-long-enough")

    refused = await client.post("/auth/refresh", json={"refresh_token": forged})
    assert_problem(refused, 401, "invalid_token")

    # Only a token we signed may trigger reuse detection; the real one still rotates.
    rotated = await client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert rotated.status_code == 200
    assert (await client.get("/users/me", headers=bearer(pair["access_token"]))).status_code == 200


@pytest.mark.parametrize(
    ("kind", "typ", "expected"), [("access", "refresh+jwt", 200), ("refresh", "at+jwt", 401)]
)
async def test_the_header_typ_is_ignored_in_favour_of_the_signed_type_claim(
    client: AsyncClient, session: AsyncSession, kind: str, typ: str, expected: int
) -> None:
    # `typ` sits in the header for the application's use (RFC 7519 §5.1); we never rely
    # on it. What a token may do is decided by its signed `type` claim alone.
    user = await make_user(session)
    token = sign(token_claims(user, kind=kind), headers={"typ": typ})
    response = await client.get("/users/me", headers=bearer(token))
    assert response.status_code == expected


async def test_a_deleted_users_token_is_refused(client: AsyncClient, session: AsyncSession) -> None:
    user = await make_user(session)
    pair = await token_pair(client, user)
    await session.delete(user)
    await session.commit()

    assert_problem(
        await client.get("/users/me", headers=bearer(pair["access_token"])), 401, "invalid_token"
    )
    assert_problem(
        await client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]}),
        401,
        "invalid_token",
    )


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc"]
)
async def test_a_request_without_a_bearer_token_is_not_authenticated(
    client: AsyncClient, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await client.get("/users/me", headers=headers)
    assert_problem(response, 401, "not_authenticated")


async def test_issued_tokens_carry_exactly_the_specified_claims(
    client: AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    pair = await token_pair(client, user)
    access, refresh = claims_of(pair["access_token"]), claims_of(pair["refresh_token"])

    expected = {"sub", "type", "jti", "sid", "iat", "exp", "iss", "aud"}
    assert set(access) == expected
    assert set(refresh) == expected
    assert (access["sub"], access["type"], refresh["type"]) == (str(user.id), "access", "refresh")
    assert (access["iss"], access["aud"]) == ("fasttrack", "fasttrack-api")
    assert access["exp"] - access["iat"] == 15 * 60 == pair["expires_in"]
    assert refresh["exp"] - refresh["iat"] == 7 * 24 * 3600
    assert access["sid"] == refresh["sid"]
    assert access["jti"] != refresh["jti"]
    header = json.loads(base64.urlsafe_b64decode(pair["access_token"].split(".")[0] + "=="))
    assert header["alg"] == "HS256"


async def test_a_token_accepted_before_is_refused_once_it_expires(
    client: AsyncClient, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await make_user(session)
    # From now, not from NOW: collecting the whole suite can take longer than a minute.
    expires = int(time.time()) + 60
    token = sign(token_claims(user, exp=expires))
    assert (await client.get("/users/me", headers=bearer(token))).status_code == 200

    later = datetime.fromtimestamp(expires, UTC)
    monkeypatch.setattr("fasttrack.auth.tokens.utcnow", lambda: later)
    response = await client.get("/users/me", headers=bearer(token))

    assert_problem(response, 401, "token_expired")


async def test_an_access_token_accepted_before_is_still_no_refresh_token(
    client: AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    token = sign(token_claims(user))
    assert (await client.get("/users/me", headers=bearer(token))).status_code == 200

    response = await client.post("/auth/refresh", json={"refresh_token": token})

    assert_problem(response, 401, "invalid_token")


def test_the_verified_token_cache_is_bounded() -> None:
    tokens = TokenService(Settings(_env_file=None, secret_key=SecretStr(TEST_SECRET)))
    first = tokens.issue_pair(1, sid="s")[0].access_token
    assert tokens.decode(first, TokenType.access).user_id == 1

    for user_id in range(2, VERIFIED_CACHE_SIZE + 2):
        tokens.decode(tokens.issue_pair(user_id, sid="s")[0].access_token, TokenType.access)

    assert len(tokens._verified) == VERIFIED_CACHE_SIZE
    assert first not in tokens._verified
    assert tokens.decode(first, TokenType.access).user_id == 1

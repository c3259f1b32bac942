"""Rate-limit keys: which client a request is counted against."""

from datetime import timedelta

import pytest
from fastapi import FastAPI
from starlette.types import Scope

from fasttrack.auth.tokens import Claims, TokenService, TokenType
from fasttrack.core.db import utcnow
from fasttrack.ratelimit.keys import ClientKeys, client_address


def _scope(client: tuple[str, int] | None = ("192.0.2.10", 1234), **headers: str) -> Scope:
    return {
        "type": "http",
        "client": client,
        "headers": [(name.encode(), value.encode()) for name, value in headers.items()],
    }


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("192.0.2.10", "192.0.2.10"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::ffff", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.10", "192.0.2.10"),
        ("not:an:address", "not:an:address"),
    ],
)
def test_client_address_groups_ipv6_by_64(host: str, expected: str) -> None:
    assert client_address(_scope((host, 1))) == expected


def test_a_request_without_a_peer_is_one_unknown_client() -> None:
    assert client_address(_scope(None)) == "unknown"


def _token(tokens: TokenService, *, user_id: int, kind: TokenType, lifetime: timedelta) -> str:
    now = utcnow()
    claims = Claims(user_id, kind, "jti-1", "sid-1", now - timedelta(hours=1), now + lifetime)
    return tokens.encode(claims)


@pytest.mark.parametrize(
    ("kind", "lifetime", "expected"),
    [
        (TokenType.access, timedelta(minutes=5), "user:42"),
        (TokenType.access, timedelta(minutes=-5), "ip:192.0.2.10"),
        (TokenType.refresh, timedelta(days=1), "ip:192.0.2.10"),
    ],
)
def test_only_a_valid_access_token_keys_by_user(
    app: FastAPI, kind: TokenType, lifetime: timedelta, expected: str
) -> None:
    tokens: TokenService = app.state.tokens
    token = _token(tokens, user_id=42, kind=kind, lifetime=lifetime)
    keys = ClientKeys(tokens)
    assert keys.user_or_address(_scope(authorization=f"Bearer {token}")) == expected
    assert keys.user_or_address(_scope(authorization=f"bearer {token}")) == expected
    # the auth routes always count per address
    assert keys.address(_scope(authorization=f"Bearer {token}")) == "ip:192.0.2.10"


@pytest.mark.parametrize(
    "authorization", ["Basic dXNlcjpwYXNz", "Bearer ", "Bearer " + "a" * 5000, "Bearer x.y.z"]
)
def test_other_credentials_key_by_address(app: FastAPI, authorization: str) -> None:
    keys = ClientKeys(app.state.tokens)
    assert keys.user_or_address(_scope(authorization=authorization)) == "ip:192.0.2.10"

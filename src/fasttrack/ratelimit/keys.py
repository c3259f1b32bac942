"""Whom a request counts against: the user of a valid access token, else the client address."""

import ipaddress
from typing import Final

from starlette.types import Scope

from fasttrack.auth.models import MAX_TOKEN_LENGTH
from fasttrack.auth.tokens import TokenService, TokenType
from fasttrack.core.errors import Unauthorized

AUTHORIZATION: Final = b"authorization"
BEARER_PREFIX: Final = b"bearer "
UNKNOWN_CLIENT: Final = "unknown"
# One IPv6 subscriber is usually handed a whole /64, so count the /64, not one address.
IPV6_PREFIX_LENGTH: Final = 64


def client_address(scope: Scope) -> str:
    """The peer address uvicorn reports: the proxy's, unless `--proxy-headers` trusts it
    to pass on the client's from `X-Forwarded-For` (see README, "Behind a proxy")."""
    client = scope.get("client")
    if not client:
        return UNKNOWN_CLIENT
    host: str = client[0]
    if ":" not in host:
        return host
    try:
        address = ipaddress.IPv6Address(host)
    except ValueError:
        return host
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((address, IPV6_PREFIX_LENGTH), strict=False))


def bearer_token(scope: Scope) -> str | None:
    value: bytes
    for name, value in scope["headers"]:
        if name == AUTHORIZATION:
            if len(value) > MAX_TOKEN_LENGTH or value[:7].lower() != BEARER_PREFIX:
                return None
            return value[7:].strip().decode("latin-1")
    return None


class ClientKeys:
    """Derives rate-limit keys from a request without touching the database.

    A valid access token keys by user, so colleagues behind one NAT do not share a
    budget. The token is verified (signature, issuer, audience, expiry, type) but not
    checked against the revocation list: a revoked, unexpired token still identifies
    its user, which is all a rate limit needs, and it is refused further in.
    """

    def __init__(self, tokens: TokenService) -> None:
        self._tokens = tokens

    def user_or_address(self, scope: Scope) -> str:
        token = bearer_token(scope)
        if token:
            try:
                claims = self._tokens.decode(token, TokenType.access)
            except Unauthorized:
                pass
            else:
                return f"user:{claims.user_id}"
        return f"ip:{client_address(scope)}"

    @staticmethod
    def address(scope: Scope) -> str:
        return f"ip:{client_address(scope)}"

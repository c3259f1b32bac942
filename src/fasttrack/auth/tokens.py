"""JWT access and refresh tokens: what they claim, how they are signed and checked."""

import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

import jwt

from fasttrack.auth.exceptions import InvalidToken, TokenExpired
from fasttrack.auth.models import TokenPair
from fasttrack.core.config import Settings
from fasttrack.core.db import MAX_ID, utcnow

REQUIRED_CLAIMS: Final = ("sub", "type", "jti", "sid", "iat", "exp", "iss", "aud")
# Tokens whose signature and claims were verified, kept to skip the JWT work when the
# same token comes back (every request of a client sends the one it holds).
VERIFIED_CACHE_SIZE: Final = 4096


class TokenType(StrEnum):
    access = "access"
    refresh = "refresh"


@dataclass(frozen=True, slots=True)
class Claims:
    user_id: int
    type: TokenType
    jti: str
    sid: str
    issued_at: datetime
    expires_at: datetime


def new_token_id() -> str:
    return str(uuid.uuid4())


class TokenService:
    """Signs and verifies tokens with the configured key, algorithm, issuer and audience."""

    def __init__(self, settings: Settings) -> None:
        self._key = settings.secret_key.get_secret_value()
        self._algorithm = settings.jwt_algorithm
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self.access_lifetime = timedelta(minutes=settings.access_token_expire_minutes)
        self.refresh_lifetime = timedelta(days=settings.refresh_token_expire_days)
        self._verified: OrderedDict[str, Claims] = OrderedDict()

    def issue_pair(self, user_id: int, *, sid: str) -> tuple[TokenPair, Claims]:
        """A new access + refresh token for session `sid`; also returns the refresh claims."""
        now = utcnow()
        access = self._claims(user_id, TokenType.access, sid, now, self.access_lifetime)
        refresh = self._claims(user_id, TokenType.refresh, sid, now, self.refresh_lifetime)
        pair = TokenPair(
            access_token=self.encode(access),
            refresh_token=self.encode(refresh),
            expires_in=int(self.access_lifetime.total_seconds()),
        )
        return pair, refresh

    @staticmethod
    def _claims(
        user_id: int, kind: TokenType, sid: str, now: datetime, lifetime: timedelta
    ) -> Claims:
        return Claims(
            user_id=user_id,
            type=kind,
            jti=new_token_id(),
            sid=sid,
            issued_at=now,
            expires_at=now + lifetime,
        )

    def encode(self, claims: Claims) -> str:
        payload: dict[str, Any] = {
            "sub": str(claims.user_id),
            "type": claims.type.value,
            "jti": claims.jti,
            "sid": claims.sid,
            "iat": int(claims.issued_at.timestamp()),
            "exp": int(claims.expires_at.timestamp()),
            "iss": self._issuer,
            "aud": self._audience,
        }
        return jwt.encode(payload, self._key, algorithm=self._algorithm)

    def decode(self, token: str, expected: TokenType, *, verify_exp: bool = True) -> Claims:
        """Verify signature, algorithm, issuer, audience, times and the token's type.

        Only the configured algorithm is accepted, which rules out `alg: none` and
        HMAC/RSA confusion. An access token is never accepted where a refresh token is
        expected, nor the reverse.

        A token verified before is not verified again: signature, issuer, audience and
        claims cannot change for the same string and key. Expiry and type are checked on
        every call, and revocation is the caller's database check, so the cache changes
        no answer, only the time it takes.
        """
        claims = self._verified.get(token)
        if claims is None:
            claims = self._verify(token, verify_exp=verify_exp)
            if verify_exp:
                self._remember(token, claims)
        else:
            self._verified.move_to_end(token)
        if claims.type is not expected:
            raise InvalidToken(f"An {expected.value} token is required here")
        # Same rule as PyJWT's: a token is expired from the second its `exp` names.
        if verify_exp and claims.expires_at <= utcnow():
            raise TokenExpired()
        return claims

    def _remember(self, token: str, claims: Claims) -> None:
        self._verified[token] = claims
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)

    def _verify(self, token: str, *, verify_exp: bool) -> Claims:
        try:
            payload = jwt.decode(
                token,
                self._key,
                algorithms=[self._algorithm],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": list(REQUIRED_CLAIMS), "verify_exp": verify_exp},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenExpired() from exc
        except jwt.InvalidTokenError as exc:
            raise InvalidToken() from exc
        try:
            return Claims(
                user_id=_user_id(payload["sub"]),
                type=TokenType(payload["type"]),
                jti=_token_id(payload["jti"]),
                sid=_token_id(payload["sid"]),
                issued_at=datetime.fromtimestamp(payload["iat"], UTC),
                expires_at=datetime.fromtimestamp(payload["exp"], UTC),
            )
        except (TypeError, ValueError, OverflowError, OSError) as exc:
            raise InvalidToken() from exc


def _user_id(value: object) -> int:
    if not isinstance(value, str) or not value.isascii() or not value.isdigit():
        raise ValueError("sub is a user id in decimal digits")
    user_id = int(value)
    if not 0 < user_id <= MAX_ID:
        raise ValueError("sub is out of the range of user ids")
    return user_id


def _token_id(value: object) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 36:
        raise ValueError("token ids are strings of at most 36 characters")
    return value

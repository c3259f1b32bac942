"""Session registry, revocation blocklist, and the auth request/response shapes."""

from datetime import datetime
from typing import Annotated, Final, Literal

from pydantic import BaseModel, WithJsonSchema
from sqlmodel import Field, SQLModel

from fasttrack.core.db import UTCDateTime, utcnow
from fasttrack.users.models import Email, PasswordAttempt

TOKEN_ID_LENGTH = 36
# Far above any token we issue: a longer one is refused before anything verifies it.
MAX_TOKEN_LENGTH: Final = 4096


class AuthSession(SQLModel, table=True):
    """A live login: one row per `sid`, so logout-all can find every session of a user.

    Tokens themselves are never stored. The row disappears when the session is revoked
    (its `sid` then sits in the blocklist) or when it expires.
    """

    __tablename__ = "auth_session"

    id: str = Field(primary_key=True, max_length=TOKEN_ID_LENGTH)
    user_id: int = Field(foreign_key="user.id", ondelete="CASCADE", index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)


class RevokedToken(SQLModel, table=True):
    """The blocklist: revoked token ids (`jti`) and session ids (`sid`) until they expire."""

    __tablename__ = "revoked_token"

    id: str = Field(primary_key=True, max_length=TOKEN_ID_LENGTH)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)


class LoginRequest(SQLModel):
    model_config = {"extra": "forbid"}

    email: Email
    password: PasswordAttempt


class TokenForm(BaseModel):
    """The OAuth2 password grant (RFC 6749 §4.3.2): `username` is the e-mail. Other fields
    are ignored, as RFC 6749 §3.2 asks of unknown parameters."""

    # A form field sent empty counts as not sent.
    grant_type: Annotated[
        Literal["password"] | None, WithJsonSchema({"type": "string", "enum": ["password", ""]})
    ] = None
    username: Email
    password: PasswordAttempt


class RefreshRequest(SQLModel):
    model_config = {"extra": "forbid"}

    refresh_token: str = Field(min_length=1, max_length=MAX_TOKEN_LENGTH)


class LogoutRequest(SQLModel):
    model_config = {"extra": "forbid"}

    refresh_token: str | None = Field(default=None, min_length=1, max_length=MAX_TOKEN_LENGTH)


class TokenPair(SQLModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int = Field(description="Lifetime of the access token in seconds.")

"""The user table and the shapes the API reads and writes."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Final, Self

from pydantic import AfterValidator, BaseModel, EmailStr, model_validator
from sqlmodel import Field, SQLModel

from fasttrack.core.db import UTCDateTime, enum_type, utcnow
from fasttrack.core.inputs import StrippedText, Utf8Bytes
from fasttrack.core.security import MAX_PASSWORD_BYTES, MIN_PASSWORD_BYTES

MAX_EMAIL_LENGTH: Final = 254


class Role(StrEnum):
    admin = "admin"
    user = "user"


def _lower_email(value: str) -> str:
    if len(value) > MAX_EMAIL_LENGTH:
        raise ValueError(f"must be at most {MAX_EMAIL_LENGTH} characters")
    return value.lower()


# Stored lower-cased, so uniqueness is case-insensitive on every database.
Email = Annotated[EmailStr, AfterValidator(_lower_email)]
# bcrypt reads 72 bytes at most.
Password = Annotated[str, Utf8Bytes(MIN_PASSWORD_BYTES, MAX_PASSWORD_BYTES)]
# A password presented for checking (login, current password): never longer than bcrypt reads.
PasswordAttempt = Annotated[str, Utf8Bytes(1, MAX_PASSWORD_BYTES)]
DisplayName = Annotated[str, StrippedText(max_length=100)]


class User(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=MAX_EMAIL_LENGTH, unique=True)
    hashed_password: str = Field(max_length=255)
    display_name: str = Field(max_length=100)
    role: Role = Field(default=Role.user, sa_type=enum_type(Role), index=True)
    is_active: bool = Field(default=True, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class UserCreate(SQLModel):
    model_config = {"extra": "forbid"}

    email: Email
    password: Password = Field(description="8 to 72 bytes when UTF-8 encoded.")
    display_name: DisplayName | None = Field(
        default=None, description="Defaults to the part of the e-mail before the @."
    )


class UserRead(BaseModel):
    id: int
    email: str
    display_name: str
    role: Role
    is_active: bool
    created_at: datetime
    updated_at: datetime


# In the update shapes an omitted field keeps its value and an explicit null is a 422,
# so every field defaults to None but is typed without it: pydantic does not validate
# defaults, and `model_dump(exclude_unset=True)` only ever yields what the client sent.


class UserSelfUpdate(SQLModel):
    model_config = {
        "extra": "forbid",
        "json_schema_extra": {
            "dependentRequired": {
                "password": ["current_password"],
                "current_password": ["password"],
            }
        },
    }

    display_name: DisplayName = Field(default=None)
    password: Password = Field(
        default=None,
        description="New password, 8 to 72 bytes when UTF-8 encoded; requires `current_password`.",
    )
    current_password: PasswordAttempt = Field(default=None)

    @model_validator(mode="after")
    def _password_and_current_password_go_together(self) -> Self:
        if ("password" in self.model_fields_set) != ("current_password" in self.model_fields_set):
            raise ValueError("password and current_password must be sent together")
        return self


class UserAdminUpdate(SQLModel):
    model_config = {"extra": "forbid"}

    display_name: DisplayName = Field(default=None)
    role: Role = Field(default=None)
    is_active: bool = Field(default=None)


class UserPromotion(SQLModel):
    """What `fasttrack create-admin` may set on an existing account: registration's rules."""

    model_config = {"extra": "forbid"}

    password: Password | None = None
    display_name: DisplayName | None = None

"""The user table and the shapes the API reads and writes."""

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Final, Self

from email_validator import SPECIAL_USE_DOMAIN_NAMES
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    EmailStr,
    StrictBool,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError
from sqlmodel import Field, SQLModel

from fasttrack.core.db import NEVER_REUSE_IDS, UTCDateTime, enum_type, utcnow
from fasttrack.core.inputs import StrippedText, Utf8Bytes
from fasttrack.core.security import MAX_PASSWORD_BYTES, MIN_PASSWORD_BYTES

MAX_EMAIL_LENGTH: Final = 254
MAX_LOCAL_PART_LENGTH: Final = 64

# The addresses the API takes, as a JSON Schema pattern: an RFC 5322 dot-atom of ASCII
# characters before the @, at most 64 of them (RFC 5321), and DNS labels after it, the last
# one ending in a letter. Every address it admits, email-validator (run after it) accepts
# too: no label has "--" in 3rd and 4th place (RFC 5890 R-LDH, Punycode included) and no
# domain is special-use (RFC 6761). What it leaves out, email-validator would take but no
# pattern can check: quoted or internationalized local parts, Unicode domains, IP literals
# and "Name <address>".
_ATEXT: Final = "A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
_NOT_R_LDH: Final = "(?![A-Za-z0-9-]{2}--)"
_LABEL: Final = f"{_NOT_R_LDH}[A-Za-z0-9](?:[A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?"
_SPECIAL_USE: Final = "|".join(
    "".join(f"[{letter.upper()}{letter}]" for letter in name) for name in SPECIAL_USE_DOMAIN_NAMES
)
_TOP_LEVEL: Final = (
    f"{_NOT_R_LDH}(?!(?:{_SPECIAL_USE})$)(?:[A-Za-z]|[A-Za-z0-9][A-Za-z0-9-]{{0,61}}[A-Za-z])"
)
_LOCAL: Final = (
    f"(?![^@]*\\.\\.)[{_ATEXT}](?:[.{_ATEXT}]{{0,{MAX_LOCAL_PART_LENGTH - 2}}}[{_ATEXT}])?"
)
EMAIL_PATTERN: Final = f"^{_LOCAL}@(?:{_LABEL}\\.)+{_TOP_LEVEL}$"
_EMAIL: Final = re.compile(EMAIL_PATTERN)


class Role(StrEnum):
    admin = "admin"
    user = "user"


def _plain_address(value: object) -> object:
    # Before email-validator, which would also strip surrounding spaces and read "Name <a@b.c>".
    if isinstance(value, str):
        if len(value) > MAX_EMAIL_LENGTH:
            reason = f"Length must not exceed {MAX_EMAIL_LENGTH} characters"
        elif _EMAIL.fullmatch(value) is None:
            reason = "it must be a plain ASCII address such as name@example.com"
        else:
            return value
        # Worded like email-validator's own refusals, which the same field also gives.
        raise PydanticCustomError(
            "value_error", "value is not a valid email address: {reason}", {"reason": reason}
        )
    return value


# Stored lower-cased, so uniqueness is case-insensitive on every database.
Email = Annotated[
    EmailStr,
    BeforeValidator(_plain_address),
    AfterValidator(str.lower),
    # No `format: email` beside the pattern: every address it admits is one, and it is the rule.
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": MAX_EMAIL_LENGTH,
            "pattern": EMAIL_PATTERN,
            "description": "An ASCII e-mail address: at most "
            f"{MAX_LOCAL_PART_LENGTH} characters before the @ and {MAX_EMAIL_LENGTH} in all.",
        }
    ),
]
# bcrypt reads 72 bytes at most.
Password = Annotated[str, Utf8Bytes(MIN_PASSWORD_BYTES, MAX_PASSWORD_BYTES)]
# A password presented for checking (login, current password): never longer than bcrypt reads.
PasswordAttempt = Annotated[str, Utf8Bytes(1, MAX_PASSWORD_BYTES)]
DisplayName = Annotated[str, StrippedText(max_length=100)]


class User(SQLModel, table=True):
    __table_args__ = (NEVER_REUSE_IDS,)

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
    is_active: StrictBool = Field(default=None)


class UserPromotion(SQLModel):
    """What `fasttrack create-admin` may set on an existing account: registration's rules."""

    model_config = {"extra": "forbid"}

    password: Password | None = None
    display_name: DisplayName | None = None

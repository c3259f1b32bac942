"""The column types, id limits and naming rules every table shares."""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Final

from fastapi import Path
from sqlalchemy import DateTime
from sqlalchemy import Enum as SAEnum
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import SQLModel

# Integer primary keys are INTEGER columns, 32-bit on PostgreSQL. A larger id names no row,
# and binding one makes the driver fail the whole query instead of finding nothing.
MAX_ID: Final = 2**31 - 1
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]

# Table options of every table with an integer id: on SQLite, without AUTOINCREMENT the
# id of the newest row, once deleted, goes to the next row, and an old link or
# notification then names another resource. (PostgreSQL sequences never go back.)
NEVER_REUSE_IDS: Final = {"sqlite_autoincrement": True}

# Deterministic constraint names, so migrations can drop and alter them on every backend.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp stored as UTC on every backend.

    SQLite has no timezone type and hands back naive datetimes; this re-attaches UTC so
    the API never emits a naive timestamp.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use fasttrack.core.db.utcnow()")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def enum_type(enum: type[StrEnum]) -> SAEnum:
    """A portable enum column: VARCHAR plus a CHECK constraint, no native PostgreSQL type."""
    return SAEnum(
        enum,
        name=enum.__name__.lower(),
        native_enum=False,
        create_constraint=True,
        length=max(len(member.value) for member in enum),
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )

"""Keyset pagination with opaque, signed cursors, shared by every list endpoint."""

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated, Any, Final, Generic, TypeVar, cast

from fastapi import Depends, Query
from pydantic import BaseModel
from sqlalchemy.orm import Mapped, QueryableAttribute
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar
from starlette.requests import HTTPConnection

from fasttrack.core.errors import UnprocessableEntity

DEFAULT_LIMIT: Final = 20
MAX_LIMIT: Final = 100
_MAC_BYTES: Final = 12

T = TypeVar("T")
ItemT = TypeVar("ItemT")


class InvalidCursor(UnprocessableEntity):
    code = "invalid_cursor"
    default_detail = "The cursor is malformed or was not issued for this list"


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CursorCodec:
    """Encodes a list position as `<payload>.<mac>`.

    The MAC covers the list it belongs to (table, key and direction), so a cursor edited by
    hand or carried over from another list is refused with 422 instead of silently
    jumping somewhere else.
    """

    def __init__(self, secret: bytes) -> None:
        self._secret = hashlib.sha256(b"fasttrack-cursor:" + secret).digest()

    def _mac(self, scope: str, payload: str) -> str:
        digest = hmac.digest(self._secret, f"{scope}|{payload}".encode(), "sha256")
        return _b64encode(digest[:_MAC_BYTES])

    def encode(self, scope: str, position: int) -> str:
        payload = _b64encode(str(position).encode())
        return f"{payload}.{self._mac(scope, payload)}"

    def decode(self, scope: str, cursor: str) -> int:
        payload, _, mac = cursor.partition(".")
        # Bytes, not str: compare_digest raises TypeError on non-ASCII text, and the cursor
        # is whatever the client put in the query string.
        if not hmac.compare_digest(mac.encode(), self._mac(scope, payload).encode()):
            raise InvalidCursor()
        try:
            return int(_b64decode(payload).decode("ascii"))
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise InvalidCursor() from exc


@dataclass(frozen=True, slots=True)
class CursorParams:
    limit: int
    cursor: str | None
    codec: CursorCodec


async def get_cursor_params(
    connection: HTTPConnection,
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description="Items per page (1..100).")
    ] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None,
        Query(
            max_length=200,
            description="`next_cursor` of the previous page; omit for the first page.",
        ),
    ] = None,
) -> CursorParams:
    return CursorParams(limit=limit, cursor=cursor, codec=connection.app.state.cursor_codec)


PageParams = Annotated[CursorParams, Depends(get_cursor_params)]


class Page(BaseModel, Generic[ItemT]):
    """One page of a list. Pass `next_cursor` back as `cursor` to get the next one."""

    items: list[ItemT]
    next_cursor: str | None
    has_more: bool


@dataclass(frozen=True, slots=True)
class PageResult(Generic[T]):
    items: list[T]
    next_cursor: str | None
    has_more: bool


async def paginate(
    session: AsyncSession,
    statement: SelectOfScalar[T],
    params: CursorParams,
    *,
    key: Mapped[Any],
    descending: bool,
) -> PageResult[T]:
    """Fetch one page of `statement` ordered by the unique column `key`.

    Keyset, not OFFSET: the page starts strictly after the last key the client saw, so
    rows inserted or deleted meanwhile never cause a duplicate or a skipped row.
    """
    column = cast("QueryableAttribute[Any]", key)
    scope = f"{column.class_.__tablename__}.{column.key}:{'desc' if descending else 'asc'}"
    if params.cursor is not None:
        after = params.codec.decode(scope, params.cursor)
        statement = statement.where(key < after if descending else key > after)
    statement = statement.order_by(key.desc() if descending else key.asc())
    rows = list((await session.exec(statement.limit(params.limit + 1))).all())
    has_more = len(rows) > params.limit
    items = rows[: params.limit]
    next_cursor = params.codec.encode(scope, getattr(items[-1], column.key)) if has_more else None
    return PageResult(items=items, next_cursor=next_cursor, has_more=has_more)

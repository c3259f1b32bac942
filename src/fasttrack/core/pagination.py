"""Keyset pagination with opaque, signed cursors, shared by every list endpoint."""

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final, Generic, TypeVar, cast

from fastapi import Depends, Query
from pydantic import BaseModel, WithJsonSchema
from sqlalchemy import ColumnElement, Integer, Select, bindparam
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import HTTPConnection

from fasttrack.core.db import execute
from fasttrack.core.errors import UnprocessableEntity

DEFAULT_LIMIT: Final = 20
MAX_LIMIT: Final = 100
MAX_CURSOR_LENGTH: Final = 200
_MAC_BYTES: Final = 12

T = TypeVar("T")
ItemT = TypeVar("ItemT")
ModelT = TypeVar("ModelT", bound=BaseModel)


class InvalidCursor(UnprocessableEntity):
    code = "invalid_cursor"
    default_detail = "The cursor is malformed or was not issued for this list"


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# The shape of every cursor CursorCodec issues, stated in the OpenAPI document. The codec
# alone checks it, so that any cursor it did not sign, of this shape or not, is refused
# alike: 422 `invalid_cursor`.
CURSOR_PATTERN: Final = rf"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{{{len(_b64encode(bytes(_MAC_BYTES)))}}}$"
Cursor = Annotated[
    str,
    WithJsonSchema({"type": "string", "maxLength": MAX_CURSOR_LENGTH, "pattern": CURSOR_PATTERN}),
]


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
        Cursor | None,
        Query(description="`next_cursor` of the previous page; omit for the first page."),
    ] = None,
) -> CursorParams:
    # A cursor we issued is far shorter; a longer one is malformed like any other.
    if cursor is not None and len(cursor) > MAX_CURSOR_LENGTH:
        raise InvalidCursor()
    return CursorParams(limit=limit, cursor=cursor, codec=connection.app.state.cursor_codec)


PageParams = Annotated[CursorParams, Depends(get_cursor_params)]


class Page(BaseModel, Generic[ItemT]):
    """One page of a list. Pass `next_cursor` back as `cursor` to get the next one."""

    items: list[ItemT]
    next_cursor: Cursor | None
    has_more: bool


@dataclass(frozen=True, slots=True)
class PageResult(Generic[T]):
    items: list[T]
    next_cursor: str | None
    has_more: bool


class KeysetList(Generic[ModelT]):
    """One list endpoint: `statement` ordered by its unique integer column `key`, one
    page at a time, each row validated as `model`.

    Keyset, not OFFSET: a page starts strictly after the last key the client saw, so rows
    inserted or deleted meanwhile never cause a duplicate or a skipped row. `filters`
    are optional conditions `expression = :name`, applied when a value is given. Each
    combination of present filters and cursor is one statement with bound parameters,
    built on first use, so SQLAlchemy compiles it once and serves it from its cache.
    """

    def __init__(
        self,
        statement: Select[Any],
        model: type[ModelT],
        *,
        key: ColumnElement[int],
        descending: bool,
        filters: Mapping[str, ColumnElement[Any]] | None = None,
    ) -> None:
        self._statement = statement
        self._model = model
        self._key = key
        self._key_name = str(cast("Any", key).key)
        self._descending = descending
        self._filters = dict(filters or {})
        self._statements: dict[tuple[frozenset[str], bool], Select[Any]] = {}
        table = cast("Any", key).table.name
        self.scope = f"{table}.{self._key_name}:{'desc' if descending else 'asc'}"

    def _page_statement(self, filters: frozenset[str], *, after: bool) -> Select[Any]:
        statement = self._statements.get((filters, after))
        if statement is None:
            statement = self._statement.where(
                *(self._filters[name] == bindparam(name) for name in sorted(filters))
            )
            if after:
                position = bindparam("after", type_=Integer)
                statement = statement.where(
                    self._key < position if self._descending else self._key > position
                )
            order = self._key.desc() if self._descending else self._key.asc()
            statement = statement.order_by(order).limit(bindparam("limit", type_=Integer))
            self._statements[(filters, after)] = statement
        return statement

    async def page(
        self, session: AsyncSession, params: CursorParams, **values: Any
    ) -> PageResult[ModelT]:
        """One page; `values` holds the statement's parameters and the filters' values
        (None = filter not applied)."""
        present = frozenset(name for name in self._filters if values.get(name) is not None)
        arguments = {
            name: value
            for name, value in values.items()
            if name not in self._filters or name in present
        }
        # A cursor belongs to one list: this table and order, this parent, these filters.
        scope = "&".join([self.scope, *(f"{name}={arguments[name]}" for name in sorted(arguments))])
        if params.cursor is not None:
            arguments["after"] = params.codec.decode(scope, params.cursor)
        statement = self._page_statement(present, after=params.cursor is not None)
        result = await execute(session, statement, {**arguments, "limit": params.limit + 1})
        rows = result.mappings().all()
        has_more = len(rows) > params.limit
        items = [self._model.model_validate(row) for row in rows[: params.limit]]
        next_cursor = (
            params.codec.encode(scope, rows[params.limit - 1][self._key_name]) if has_more else None
        )
        return PageResult(items=items, next_cursor=next_cursor, has_more=has_more)

"""Optimistic concurrency: ETags from version columns, If-Match preconditions."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Protocol

from fastapi import Depends, Header
from sqlalchemy import inspect
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.core.errors import NotFound, PreconditionFailed


class Versioned(Protocol):
    version: int


def etag(version: int) -> str:
    return f'"{version}"'


@dataclass(frozen=True, slots=True)
class IfMatch:
    """A parsed If-Match header: `*` or a list of strong entity tags (RFC 9110 §13.1.1)."""

    any: bool
    tags: frozenset[str]

    def matches(self, version: int) -> bool:
        # Strong comparison: a weak tag (W/"3") never matches.
        return self.any or etag(version) in self.tags


def parse_if_match(value: str) -> IfMatch:
    value = value.strip()
    if value == "*":
        return IfMatch(any=True, tags=frozenset())
    return IfMatch(
        any=False, tags=frozenset(tag.strip() for tag in value.split(",") if tag.strip())
    )


async def get_if_match(
    if_match: Annotated[
        str | None,
        Header(
            alias="If-Match",
            max_length=1024,
            description='Apply only if the resource still has this ETag (e.g. `"3"`); 412 if not.',
        ),
    ] = None,
) -> IfMatch | None:
    return None if if_match is None else parse_if_match(if_match)


async def save_versioned(
    session: AsyncSession,
    row: Versioned,
    if_match: IfMatch | None,
    apply: Callable[[], Awaitable[None]],
) -> None:
    """Check the precondition, run `apply` (which changes `row`), and commit.

    With If-Match, the row's version column makes the UPDATE conditional on the version we
    read, so of two concurrent writers with the same If-Match exactly one wins and the
    other gets 412. Without If-Match the change must apply however many others write at
    the same time: the row is locked and re-read first, so `apply` sees its latest state
    and no writer can slip in before the commit.
    """
    if if_match is None:
        # Columns only: a refresh of the whole row would also unload relationships loaded
        # with the row (lazy="raise"), and a rollback-and-retry would expire every object
        # of the request, the caller included. PostgreSQL takes a row lock (FOR UPDATE);
        # SQLite drops the clause, its single writer already serializes the transaction.
        columns = [attribute.key for attribute in inspect(row).mapper.column_attrs]
        try:
            await session.refresh(row, attribute_names=columns, with_for_update=True)
        except InvalidRequestError:
            # The row was deleted since it was loaded.
            raise NotFound() from None
    elif not if_match.matches(row.version):
        raise PreconditionFailed()
    await apply()
    try:
        await session.commit()
    except StaleDataError:
        await session.rollback()
        raise PreconditionFailed() from None


IfMatchDep = Annotated[IfMatch | None, Depends(get_if_match)]

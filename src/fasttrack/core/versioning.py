"""Optimistic concurrency: ETags from version columns, If-Match preconditions."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Protocol, TypeVar, cast

from fastapi import Depends, Header
from sqlalchemy import inspect
from sqlmodel import SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.responses import Response

from fasttrack.core.db import commit
from fasttrack.core.errors import NotFound, PreconditionFailed


class Versioned(Protocol):
    version: int


# A table with a `version` counter mapped as its version_id_col.
VersionedT = TypeVar("VersionedT", bound=SQLModel)


def etag(version: int) -> str:
    return f'"{version}"'


def set_etag(response: Response, version: int) -> None:
    response.headers["ETag"] = etag(version)


def etag_responses(resource: str, *statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for answers that carry the `resource`'s ETag."""
    header = {
        "ETag": {
            "description": f"Version of the {resource}, for `If-Match`.",
            "schema": {"type": "string"},
        }
    }
    return {status: {"headers": header} for status in statuses}


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
    model: type[VersionedT],
    row_id: int,
    if_match: IfMatch | None,
    apply: Callable[[VersionedT], Awaitable[None]],
    *,
    missing: type[NotFound],
    authorize: Callable[[VersionedT], None] | None = None,
) -> VersionedT:
    """Read the row for update, check the precondition, let `apply` change it, commit.

    The row is read in the writer's own transaction and locked (PostgreSQL `FOR UPDATE`;
    on SQLite the single writer already holds the database), so `apply` sees its latest
    state, If-Match is compared with the version no one else can change before the
    commit, and of two writers with the same If-Match exactly one wins. A row deleted since
    the request's loaders saw it is a 404 (`missing`): RFC 9110 §13.2.1 evaluates
    preconditions only for a request that would otherwise succeed.
    """
    primary_key = inspect(model).primary_key[0]
    statement = select(model).where(primary_key == row_id).with_for_update()
    row = (await session.exec(statement)).first()
    if row is None:
        raise missing()
    if authorize is not None:
        # On the locked row: what decides who may write is what the write changes.
        authorize(row)
    if if_match is not None and not if_match.matches(cast("Versioned", row).version):
        raise PreconditionFailed()
    await apply(row)
    await commit(session)
    return row


IfMatchDep = Annotated[IfMatch | None, Depends(get_if_match)]

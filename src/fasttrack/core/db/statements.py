"""Core statements over the tables of table models, run in a session's transaction."""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel
from sqlalchemy import (
    Column,
    ColumnElement,
    CursorResult,
    Executable,
    RowMapping,
    Table,
    bindparam,
    insert,
    select,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession


def table_of(model: type[SQLModel]) -> Table:
    """The Core table of a table model.

    Reads are Core statements over tables, not ORM queries: they skip the ORM's per-row
    bookkeeping, and a read model validates each row they return.
    """
    table: Table = model.__table__  # type: ignore[attr-defined]
    return table


def columns_of(model: type[SQLModel], shape: type[BaseModel]) -> list[Column[Any]]:
    """The columns of `model`'s table that the read model `shape` has fields for."""
    return [column for column in table_of(model).c if column.key in shape.model_fields]


async def execute(
    session: AsyncSession,
    statement: Executable,
    parameters: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
) -> CursorResult[Any]:
    """Run a Core statement on the session's connection, in its transaction.

    Reads and plain writes are Core: SQLModel's `exec` is for ORM queries of table models.
    """
    connection = await session.connection()
    return await connection.execute(statement, parameters)


class InsertReturning:
    """INSERT rows of a table model and return `returning`, with Core, in the session's
    transaction; the statement is built once.

    The table model's defaults (`utcnow`, `version=1`) fill what the caller leaves out,
    so they are declared once, on the model, without building a model instance per row
    (SQLModel's instrumented constructor is the dearer part of a small insert). An unset
    autoincrement key is left to the database.
    """

    def __init__(
        self,
        model: type[SQLModel],
        *,
        returning: Sequence[Column[Any]],
        where: ColumnElement[bool] | None = None,
    ) -> None:
        table = table_of(model)
        if where is None:
            # Several rows go in one statement, and come back in the order they were given.
            self._statement = insert(table).returning(*returning, sort_by_parameter_order=True)
        else:
            # One row, inserted only if `where` holds, in the same statement: a rule
            # decided where the row is written (`__call__` then finds no row).
            names = [column.key for column in table.c if not column.primary_key]
            values = select(*(bindparam(name, type_=table.c[name].type) for name in names))
            self._statement = (
                insert(table).from_select(names, values.where(where)).returning(*returning)
            )
        self._defaults: dict[str, Any] = {}
        self._factories: dict[str, Callable[[], Any]] = {}
        for name, field in model.model_fields.items():
            if table.c[name].primary_key or field.is_required():
                continue
            if field.default_factory is None:
                self._defaults[name] = field.default
            else:
                # Factories that read the other fields would need a validated instance.
                assert not field.default_factory_takes_validated_data, name
                self._factories[name] = field.default_factory  # type: ignore[assignment]

    def _row(self, values: Mapping[str, Any]) -> dict[str, Any]:
        row = {**self._defaults, **values}
        for name, factory in self._factories.items():
            if name not in values:
                row[name] = factory()
        return row

    async def __call__(self, session: AsyncSession, **values: Any) -> RowMapping:
        result = await execute(session, self._statement, self._row(values))
        return result.mappings().one()

    async def where_allowed(
        self, session: AsyncSession, condition: Mapping[str, Any], **values: Any
    ) -> RowMapping | None:
        """Insert one row of `values` if the `where` condition holds with the parameters
        `condition`; None if it did not."""
        result = await execute(session, self._statement, {**self._row(values), **condition})
        return result.mappings().first()

    async def many(
        self, session: AsyncSession, rows: Sequence[Mapping[str, Any]]
    ) -> Sequence[RowMapping]:
        """Several rows in one statement; what each returns, in the order given."""
        if not rows:
            return []
        result = await execute(session, self._statement, [self._row(row) for row in rows])
        return result.mappings().all()


async def insert_ignoring_duplicates(
    session: AsyncSession, model: type[SQLModel], rows: list[dict[str, Any]]
) -> None:
    """INSERT rows, silently skipping those whose primary key already exists."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(model).values(rows).on_conflict_do_nothing()
    await session.exec(statement)

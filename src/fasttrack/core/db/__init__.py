"""The data layer: engines, the unit of work, shared column types, Core statements."""

from fasttrack.core.db.engines import Database, create_database
from fasttrack.core.db.statements import (
    InsertReturning,
    columns_of,
    execute,
    insert_ignoring_duplicates,
    table_of,
)
from fasttrack.core.db.types import (
    MAX_ID,
    NEVER_REUSE_IDS,
    IdPath,
    UTCDateTime,
    enum_type,
    utcnow,
)
from fasttrack.core.db.unit_of_work import (
    NoPublisher,
    SessionDep,
    UnitOfWork,
    UnitOfWorkDep,
    UnitOfWorkRoute,
    UnitOfWorkSession,
    commit,
    effects_of,
    get_session,
    get_unit_of_work,
    idle,
    unit_of_work_of,
)

__all__ = [
    "MAX_ID",
    "NEVER_REUSE_IDS",
    "Database",
    "IdPath",
    "InsertReturning",
    "NoPublisher",
    "SessionDep",
    "UTCDateTime",
    "UnitOfWork",
    "UnitOfWorkDep",
    "UnitOfWorkRoute",
    "UnitOfWorkSession",
    "columns_of",
    "commit",
    "create_database",
    "effects_of",
    "enum_type",
    "execute",
    "get_session",
    "get_unit_of_work",
    "idle",
    "insert_ignoring_duplicates",
    "table_of",
    "unit_of_work_of",
    "utcnow",
]

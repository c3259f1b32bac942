"""Ids are never reused; task counts follow every task change in its transaction.

SQLite gives a new row the highest id in use plus one, so deleting the newest project
handed its id to the next one: AUTOINCREMENT keeps ids increasing for good (SQLite can
add it only by rebuilding each table). PostgreSQL sequences never go back already.

Triggers of the task table keep `project.*_count` exact, in the transaction of the
change, in O(1). The counts are then recounted once from the tasks.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from collections.abc import Sequence
from typing import Final

from alembic import context, op
from sqlalchemy import MetaData, Table

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Parents first; SQLite checks no foreign keys during migrations (they are off there).
ID_TABLES: Final = ("user", "project", "task", "comment", "notification")

SQLITE_TRIGGERS: Final = {
    "task_counts_insert": """
        CREATE TRIGGER task_counts_insert AFTER INSERT ON task FOR EACH ROW BEGIN
            UPDATE project SET todo_count = todo_count + (NEW.status = 'todo'),
                in_progress_count = in_progress_count + (NEW.status = 'in_progress'),
                done_count = done_count + (NEW.status = 'done')
            WHERE id = NEW.project_id;
        END""",
    "task_counts_delete": """
        CREATE TRIGGER task_counts_delete AFTER DELETE ON task FOR EACH ROW BEGIN
            UPDATE project SET todo_count = todo_count - (OLD.status = 'todo'),
                in_progress_count = in_progress_count - (OLD.status = 'in_progress'),
                done_count = done_count - (OLD.status = 'done')
            WHERE id = OLD.project_id;
        END""",
    "task_counts_update": """
        CREATE TRIGGER task_counts_update AFTER UPDATE OF status, project_id ON task
        FOR EACH ROW WHEN OLD.status IS NOT NEW.status OR OLD.project_id IS NOT NEW.project_id
        BEGIN
            UPDATE project SET todo_count = todo_count - (OLD.status = 'todo'),
                in_progress_count = in_progress_count - (OLD.status = 'in_progress'),
                done_count = done_count - (OLD.status = 'done')
            WHERE id = OLD.project_id;
            UPDATE project SET todo_count = todo_count + (NEW.status = 'todo'),
                in_progress_count = in_progress_count + (NEW.status = 'in_progress'),
                done_count = done_count + (NEW.status = 'done')
            WHERE id = NEW.project_id;
        END""",
}
POSTGRESQL_FUNCTION: Final = """
    CREATE FUNCTION task_counts_follow() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            UPDATE project SET todo_count = todo_count - (OLD.status = 'todo')::int,
                in_progress_count = in_progress_count - (OLD.status = 'in_progress')::int,
                done_count = done_count - (OLD.status = 'done')::int
            WHERE id = OLD.project_id;
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            UPDATE project SET todo_count = todo_count + (NEW.status = 'todo')::int,
                in_progress_count = in_progress_count + (NEW.status = 'in_progress')::int,
                done_count = done_count + (NEW.status = 'done')::int
            WHERE id = NEW.project_id;
        END IF;
        RETURN NULL;
    END $$"""
POSTGRESQL_TRIGGERS: Final = {
    "task_counts_insert_delete": """
        CREATE TRIGGER task_counts_insert_delete AFTER INSERT OR DELETE ON task
        FOR EACH ROW EXECUTE FUNCTION task_counts_follow()""",
    "task_counts_update": """
        CREATE TRIGGER task_counts_update AFTER UPDATE OF status, project_id ON task
        FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status
            OR OLD.project_id IS DISTINCT FROM NEW.project_id)
        EXECUTE FUNCTION task_counts_follow()""",
}
RECOUNT: Final = """
    UPDATE project SET
        todo_count = (SELECT count(*) FROM task
            WHERE task.project_id = project.id AND task.status = 'todo'),
        in_progress_count = (SELECT count(*) FROM task
            WHERE task.project_id = project.id AND task.status = 'in_progress'),
        done_count = (SELECT count(*) FROM task
            WHERE task.project_id = project.id AND task.status = 'done')"""


def _defined(table: str) -> Table | None:
    """A table as the models define it, for a script rendered offline (`--sql`): SQLite
    rebuilds tables by copying them, which online mode reflects from the database."""
    if not context.is_offline_mode():
        return None
    metadata: MetaData = context.get_context().opts["target_metadata"]
    return metadata.tables.get(table)


def upgrade() -> None:
    sqlite = context.get_context().dialect.name == "sqlite"
    if sqlite:
        for table in ID_TABLES:
            with op.batch_alter_table(
                table,
                recreate="always",
                copy_from=_defined(table),
                table_kwargs={"sqlite_autoincrement": True},
            ):
                pass
        triggers = list(SQLITE_TRIGGERS.values())
    else:
        triggers = [POSTGRESQL_FUNCTION, *POSTGRESQL_TRIGGERS.values()]
    for statement in triggers:
        op.execute(statement)
    op.execute(RECOUNT)


def downgrade() -> None:
    if context.get_context().dialect.name == "sqlite":
        for name in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER {name}")
        for table in reversed(ID_TABLES):
            with op.batch_alter_table(
                table, recreate="always", table_kwargs={"sqlite_autoincrement": False}
            ):
                pass
        return
    for name in POSTGRESQL_TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON task")
    op.execute("DROP FUNCTION task_counts_follow()")

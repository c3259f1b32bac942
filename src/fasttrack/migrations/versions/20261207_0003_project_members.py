"""Projects have members with roles.

Existing data keeps every view it had: each project's owner becomes its `owner` member,
and each assignee of a task who is not a member of its project becomes a `viewer`.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from collections.abc import Sequence
from typing import Final

import sqlalchemy as sa
from alembic import context, op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


OWNERS: Final = (
    "INSERT INTO project_member (project_id, user_id, role, added_at) "
    "SELECT id, owner_id, 'owner', created_at FROM project"
)
_ASSIGNEES_WHO_ARE_NOT_MEMBERS: Final = (
    " FROM task WHERE task.assignee_id IS NOT NULL AND NOT EXISTS ("
    "SELECT 1 FROM project_member WHERE project_member.project_id = task.project_id "
    "AND project_member.user_id = task.assignee_id)"
)
VIEWERS: Final = {
    "sqlite": "INSERT INTO project_member (project_id, user_id, role, added_at) "
    "SELECT DISTINCT task.project_id, task.assignee_id, 'viewer', "
    "strftime('%Y-%m-%d %H:%M:%f', 'now')" + _ASSIGNEES_WHO_ARE_NOT_MEMBERS,
    "postgresql": "INSERT INTO project_member (project_id, user_id, role, added_at) "
    "SELECT DISTINCT task.project_id, task.assignee_id, 'viewer', now()"
    + _ASSIGNEES_WHO_ARE_NOT_MEMBERS,
}


def upgrade() -> None:
    op.create_table(
        "project_member",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "owner",
                "editor",
                "viewer",
                name="memberrole",
                native_enum=False,
                create_constraint=True,
            ),
            nullable=False,
        ),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["project.id"],
            name=op.f("fk_project_member_project_id_project"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user.id"],
            name=op.f("fk_project_member_user_id_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", "user_id", name=op.f("pk_project_member")),
    )
    op.create_index(
        "ix_project_member_user_id_project_id", "project_member", ["user_id", "project_id"]
    )
    op.execute(OWNERS)
    op.execute(VIEWERS[context.get_context().dialect.name])


def downgrade() -> None:
    op.execute("DELETE FROM notification WHERE type IN ('member_added', 'member_removed')")
    op.drop_index("ix_project_member_user_id_project_id", table_name="project_member")
    op.drop_table("project_member")

"""The project table and the shapes the API reads and writes."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StrictInt,
    StringConstraints,
    computed_field,
    model_validator,
)
from sqlalchemy import Index
from sqlalchemy.orm import declared_attr
from sqlmodel import Field, SQLModel

from fasttrack.core.db import MAX_ID, NEVER_REUSE_IDS, UTCDateTime, enum_type, utcnow
from fasttrack.core.inputs import NO_NUL, StrippedText, whole_number
from fasttrack.users.models import Email

ProjectName = Annotated[str, StrippedText(max_length=200)]
ProjectDescription = Annotated[str, StringConstraints(max_length=5000), NO_NUL]


class ProjectStatus(StrEnum):
    active = "active"
    archived = "archived"


class Project(SQLModel, table=True):
    __table_args__ = (Index("ix_project_owner_id_id", "owner_id", "id"), NEVER_REUSE_IDS)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    status: ProjectStatus = Field(
        default=ProjectStatus.active, sa_type=enum_type(ProjectStatus), index=True
    )
    owner_id: int = Field(foreign_key="user.id", ondelete="CASCADE")
    # Bumped by every change of the project's own fields; the ETag is derived from it.
    version: int = Field(default=1)
    # Kept by triggers of the task table: each task change moves them by one, in its own
    # transaction (O(1), no recount); tasks.counts repairs them if they ever drift.
    todo_count: int = Field(default=0)
    in_progress_count: int = Field(default=0)
    done_count: int = Field(default=0)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:  # noqa: N805
        # An UPDATE only applies if the row still has the version we read: two concurrent
        # PATCHes with the same If-Match cannot both win.
        return {"version_id_col": cls.__table__.c.version}  # type: ignore[attr-defined]


class ProjectCreate(SQLModel):
    model_config = {"extra": "forbid"}

    name: ProjectName
    description: ProjectDescription | None = None


class ProjectUpdate(SQLModel):
    model_config = {"extra": "forbid"}

    # Omitted fields keep their value; an explicit null is refused except where the
    # column is nullable (see users.models for why the defaults are None).
    name: ProjectName = Field(default=None)
    description: ProjectDescription | None = None
    status: ProjectStatus = Field(default=None)


class ProjectSummary(BaseModel):
    """What the routes of a project's tasks need of it: who owns it, and its name."""

    id: int
    name: str
    owner_id: int


class TaskCounts(BaseModel):
    todo: int
    in_progress: int
    done: int
    total: int


class ProjectRead(BaseModel):
    id: int
    name: str
    description: str | None
    status: ProjectStatus
    owner_id: int
    version: int = Field(exclude=True)
    todo_count: int = Field(exclude=True)
    in_progress_count: int = Field(exclude=True)
    done_count: int = Field(exclude=True)
    created_at: datetime
    updated_at: datetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def task_counts(self) -> TaskCounts:
        return TaskCounts(
            todo=self.todo_count,
            in_progress=self.in_progress_count,
            done=self.done_count,
            total=self.todo_count + self.in_progress_count + self.done_count,
        )


UserId = Annotated[StrictInt, Field(ge=1, le=MAX_ID), BeforeValidator(whole_number)]


class MemberRole(StrEnum):
    owner = "owner"
    editor = "editor"
    viewer = "viewer"


# The roles a member can be given or changed to; `owner` only by a transfer.
AssignableRole = Literal[MemberRole.editor, MemberRole.viewer]


class ProjectMember(SQLModel, table=True):
    __tablename__ = "project_member"
    # The projects of a user, in id order (GET /projects?role=, visibility of lists).
    __table_args__ = (Index("ix_project_member_user_id_project_id", "user_id", "project_id"),)

    project_id: int = Field(foreign_key="project.id", primary_key=True, ondelete="CASCADE")
    user_id: int = Field(foreign_key="user.id", primary_key=True, ondelete="CASCADE")
    role: MemberRole = Field(sa_type=enum_type(MemberRole))
    added_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class MemberAdd(BaseModel):
    """Exactly one of `user_id` and `email` (any letter case) names the user."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"oneOf": [{"required": ["user_id"]}, {"required": ["email"]}]},
    )

    # Optional but never null: the schema's oneOf says which one is given.
    user_id: UserId = Field(default=None)
    email: Email = Field(default=None)
    role: AssignableRole = MemberRole.editor

    @model_validator(mode="after")
    def _exactly_one_user(self) -> Self:
        if len({"user_id", "email"} & self.model_fields_set) != 1:
            raise ValueError("give exactly one of user_id and email")
        return self


class MemberUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: AssignableRole


class Transfer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: UserId


class MemberRead(BaseModel):
    user_id: int
    project_id: int
    role: MemberRole
    email: str
    display_name: str
    added_at: datetime

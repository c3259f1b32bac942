"""The task table and the shapes the API reads and writes."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, StrictInt, StringConstraints
from sqlalchemy import Index
from sqlalchemy.orm import declared_attr
from sqlmodel import Field, SQLModel

from fasttrack.core.db import MAX_ID, NEVER_REUSE_IDS, UTCDateTime, enum_type, utcnow
from fasttrack.core.inputs import NO_NUL, StrippedText, whole_number

TaskTitle = Annotated[str, StrippedText(max_length=200)]
TaskDescription = Annotated[str, StringConstraints(max_length=10000), NO_NUL]
AssigneeId = Annotated[StrictInt, Field(ge=1, le=MAX_ID), BeforeValidator(whole_number)]


class TaskStatus(StrEnum):
    todo = "todo"
    in_progress = "in_progress"
    done = "done"


class Priority(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"


class Task(SQLModel, table=True):
    __table_args__ = (
        Index("ix_task_project_id_id", "project_id", "id"),
        Index("ix_task_assignee_id_id", "assignee_id", "id"),
        Index("ix_task_project_id_status", "project_id", "status"),
        NEVER_REUSE_IDS,
    )

    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="project.id", ondelete="CASCADE")
    title: str = Field(max_length=200)
    description: str | None = Field(default=None, max_length=10000)
    status: TaskStatus = Field(default=TaskStatus.todo, sa_type=enum_type(TaskStatus))
    priority: Priority = Field(default=Priority.medium, sa_type=enum_type(Priority), index=True)
    assignee_id: int | None = Field(default=None, foreign_key="user.id", ondelete="SET NULL")
    version: int = Field(default=1)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    completed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:  # noqa: N805
        # See Project: the version guards If-Match against concurrent writers.
        return {"version_id_col": cls.__table__.c.version}  # type: ignore[attr-defined]


class TaskCreate(SQLModel):
    model_config = {"extra": "forbid"}

    title: TaskTitle
    description: TaskDescription | None = None
    status: TaskStatus = TaskStatus.todo
    priority: Priority = Priority.medium
    assignee_id: AssigneeId | None = None


class TaskUpdate(SQLModel):
    model_config = {"extra": "forbid"}

    # Omitted fields keep their value; null clears only the nullable ones.
    title: TaskTitle = Field(default=None)
    description: TaskDescription | None = None
    status: TaskStatus = Field(default=None)
    priority: Priority = Field(default=None)
    assignee_id: AssigneeId | None = None


class TaskRead(BaseModel):
    id: int
    project_id: int
    title: str
    description: str | None
    status: TaskStatus
    priority: Priority
    assignee_id: int | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None


class TaskView(TaskRead):
    """A task as its loaders see it: what the API shows, and what the access rules and
    the ETag need besides."""

    version: int = Field(exclude=True)

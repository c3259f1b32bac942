"""The comment table and the shapes the API reads and writes."""

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel
from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from fasttrack.core.db import NEVER_REUSE_IDS, UTCDateTime, utcnow
from fasttrack.core.inputs import StrippedText

# Stripped like titles: a comment of only whitespace says nothing.
CommentBody = Annotated[str, StrippedText(max_length=5000)]


class Comment(SQLModel, table=True):
    __table_args__ = (Index("ix_comment_task_id_id", "task_id", "id"), NEVER_REUSE_IDS)

    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(foreign_key="task.id", ondelete="CASCADE")
    author_id: int = Field(foreign_key="user.id", ondelete="CASCADE", index=True)
    body: str = Field(max_length=5000)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class CommentCreate(SQLModel):
    model_config = {"extra": "forbid"}

    body: CommentBody


class CommentRead(BaseModel):
    id: int
    task_id: int
    author_id: int
    body: str
    created_at: datetime

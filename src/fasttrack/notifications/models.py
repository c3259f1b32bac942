"""The notification inbox table and its public shape."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel
from sqlalchemy import JSON, Index
from sqlmodel import Field, SQLModel

from fasttrack.core.db import NEVER_REUSE_IDS, UTCDateTime, utcnow


class NotificationType(StrEnum):
    task_assigned = "task_assigned"
    status_changed = "status_changed"
    comment_added = "comment_added"
    member_added = "member_added"
    member_removed = "member_removed"


class Notification(SQLModel, table=True):
    __table_args__ = (Index("ix_notification_user_id_id", "user_id", "id"), NEVER_REUSE_IDS)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", ondelete="CASCADE")
    type: str = Field(max_length=50)
    data: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    read_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class NotificationRead(BaseModel):
    id: int
    type: NotificationType
    data: dict[str, Any]
    created_at: datetime
    read_at: datetime | None


class StoredNotification(NotificationRead):
    """A notification in one recipient's inbox, as pushed to their sockets."""

    user_id: int

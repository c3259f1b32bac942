"""The notification inbox: who is told what, and reading it (SPEC §5 Notifications, §7)."""

from collections.abc import Iterable
from typing import Any, Final

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.core.db import utcnow
from fasttrack.core.pagination import CursorParams, KeysetList, PageResult
from fasttrack.core.prepared import PreparedInsert, PreparedQuery, QueryRunner, Row, columns_of
from fasttrack.notifications.exceptions import NotificationNotFound
from fasttrack.notifications.models import (
    Notification,
    NotificationRead,
    NotificationType,
    StoredNotification,
)
from fasttrack.users.models import UserRead

REPLAY_BATCH: Final = 100

_STORED: Final = columns_of(Notification, StoredNotification)
_INSERT: Final = PreparedInsert(Notification, returning=_STORED)
_MISSED: Final = PreparedQuery(
    sa.select(*_STORED)
    .where(
        col(Notification.user_id) == sa.bindparam("user_id"),
        col(Notification.id) > sa.bindparam("since"),
    )
    .order_by(col(Notification.id))
    .limit(sa.bindparam("limit", type_=sa.Integer))
)
_INBOX: Final = KeysetList(
    sa.select(*columns_of(Notification, NotificationRead)).where(
        col(Notification.user_id) == sa.bindparam("user_id")
    ),
    key=col(Notification.id),
    descending=True,
    filters={"unread": col(Notification.read_at).is_(None)},
)


def _actor(user: UserRead) -> dict[str, Any]:
    return {"id": user.id, "display_name": user.display_name}


async def notify(
    runner: QueryRunner,
    recipients: Iterable[int | None],
    kind: NotificationType,
    data: dict[str, Any],
    *,
    actor: UserRead,
) -> list[StoredNotification]:
    """Store one inbox row per recipient with the statements of the caller's transaction.

    The person who caused the event is never told about it, and nobody is told twice.
    The caller commits; pushing to live connections happens after that commit.
    """
    return [
        StoredNotification.model_validate(
            await _INSERT.one(runner, user_id=user_id, type=kind.value, data=data)
        )
        for user_id in dict.fromkeys(recipients)
        if user_id is not None and user_id != actor.id
    ]


async def task_assigned(
    runner: QueryRunner,
    *,
    task_id: int | None,
    task_title: str,
    project_id: int,
    project_name: str,
    assignee_id: int,
    actor: UserRead,
) -> list[StoredNotification]:
    data = {
        "task_id": task_id,
        "task_title": task_title,
        "project_id": project_id,
        "project_name": project_name,
        "assigned_by": _actor(actor),
    }
    return await notify(runner, [assignee_id], NotificationType.task_assigned, data, actor=actor)


async def status_changed(
    runner: QueryRunner,
    *,
    task_id: int | None,
    task_title: str,
    old: str,
    new: str,
    recipients: Iterable[int | None],
    actor: UserRead,
) -> list[StoredNotification]:
    data = {
        "task_id": task_id,
        "task_title": task_title,
        "old": old,
        "new": new,
        "changed_by": _actor(actor),
    }
    return await notify(runner, recipients, NotificationType.status_changed, data, actor=actor)


async def comment_added(
    runner: QueryRunner,
    *,
    task_id: int | None,
    comment_id: int | None,
    recipients: Iterable[int | None],
    actor: UserRead,
) -> list[StoredNotification]:
    data = {
        "task_id": task_id,
        "comment_id": comment_id,
        "author_id": actor.id,
        "author_name": actor.display_name,
    }
    return await notify(runner, recipients, NotificationType.comment_added, data, actor=actor)


async def list_notifications(
    reads: QueryRunner, user_id: int, params: CursorParams, *, unread: bool | None = None
) -> PageResult[Row]:
    return await _INBOX.page(reads, params, user_id=user_id, unread=unread)


async def mark_read(session: AsyncSession, user: UserRead, notification_id: int) -> None:
    """Mark one of the user's notifications read (idempotent); 404 if it is not theirs."""
    notification = (
        await session.exec(
            select(Notification).where(
                Notification.id == notification_id, Notification.user_id == user.id
            )
        )
    ).first()
    if notification is None:
        raise NotificationNotFound()
    if notification.read_at is None:
        notification.read_at = utcnow()
        session.add(notification)
        await session.commit()


async def mark_all_read(session: AsyncSession, user: UserRead) -> None:
    await session.exec(
        sa.update(Notification)
        .where(col(Notification.user_id) == user.id, col(Notification.read_at).is_(None))
        .values(read_at=utcnow())
    )
    await session.commit()


async def missed_since(
    reads: QueryRunner, user_id: int, since: int, *, limit: int = REPLAY_BATCH
) -> list[StoredNotification]:
    """The user's notifications with an id above `since`, oldest first, one batch."""
    rows = await reads.all(_MISSED, user_id=user_id, since=since, limit=limit)
    return [StoredNotification.model_validate(row) for row in rows]

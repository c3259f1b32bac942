"""The notification inbox: who is told what, and reading it (SPEC §5 Notifications, §7)."""

from collections.abc import Iterable
from typing import Any, Final

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from fasttrack.core.db import (
    InsertReturning,
    columns_of,
    commit,
    effects_of,
    execute,
    table_of,
    utcnow,
)
from fasttrack.core.effects import Event
from fasttrack.core.pagination import CursorParams, KeysetList, PageResult
from fasttrack.notifications.exceptions import NotificationNotFound
from fasttrack.notifications.models import (
    Notification,
    NotificationRead,
    NotificationType,
    StoredNotification,
)
from fasttrack.users.models import UserRead

REPLAY_BATCH: Final = 100

NOTIFICATION: Final = table_of(Notification)
_STORED: Final = columns_of(Notification, StoredNotification)
_INSERT: Final = InsertReturning(Notification, returning=_STORED)
_MISSED: Final = (
    sa.select(*_STORED)
    .where(
        NOTIFICATION.c.user_id == sa.bindparam("user_id"),
        NOTIFICATION.c.id > sa.bindparam("since"),
    )
    .order_by(NOTIFICATION.c.id)
    .limit(sa.bindparam("limit", type_=sa.Integer))
)
_INBOX: Final = KeysetList(
    sa.select(*columns_of(Notification, NotificationRead)).where(
        NOTIFICATION.c.user_id == sa.bindparam("user_id")
    ),
    NotificationRead,
    key=NOTIFICATION.c.id,
    descending=True,
    filters={"unread": NOTIFICATION.c.read_at.is_(None)},
)


def notification_message(notification: StoredNotification) -> dict[str, Any]:
    return {
        "type": notification.type,
        "id": notification.id,
        "data": notification.data,
        "timestamp": notification.created_at.isoformat(),
    }


def notifications_event(notifications: Iterable[StoredNotification]) -> Event:
    """Pushes of stored notifications to their recipients' sockets, in every process."""
    messages = [
        {"user_id": notification.user_id, "message": notification_message(notification)}
        for notification in notifications
    ]
    return {"kind": "notifications", "messages": messages}


def _actor(user: UserRead) -> dict[str, Any]:
    return {"id": user.id, "display_name": user.display_name}


async def notify(
    session: AsyncSession,
    recipients: Iterable[int | None],
    kind: NotificationType,
    data: dict[str, Any],
    *,
    actor: UserRead,
) -> list[StoredNotification]:
    """Store one inbox row per recipient, in one statement of the caller's transaction.

    The person who caused the event is never told about it, and nobody is told twice.
    The caller commits; the rows are pushed to live connections once it has.
    """
    rows = [
        {"user_id": user_id, "type": kind.value, "data": data}
        for user_id in dict.fromkeys(recipients)
        if user_id is not None and user_id != actor.id
    ]
    # In the order given: the recipients' inboxes fill in the order they were listed.
    stored = [StoredNotification.model_validate(row) for row in await _INSERT.many(session, rows)]
    if stored:
        effects_of(session).announce(notifications_event(stored))
    return stored


async def task_assigned(
    session: AsyncSession,
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
    return await notify(session, [assignee_id], NotificationType.task_assigned, data, actor=actor)


async def status_changed(
    session: AsyncSession,
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
    return await notify(session, recipients, NotificationType.status_changed, data, actor=actor)


async def comment_added(
    session: AsyncSession,
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
    return await notify(session, recipients, NotificationType.comment_added, data, actor=actor)


async def list_notifications(
    session: AsyncSession, user_id: int, params: CursorParams, *, unread: bool | None = None
) -> PageResult[NotificationRead]:
    return await _INBOX.page(session, params, user_id=user_id, unread=unread)


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
        await commit(session)


async def mark_all_read(session: AsyncSession, user: UserRead) -> None:
    await session.exec(
        sa.update(Notification)
        .where(col(Notification.user_id) == user.id, col(Notification.read_at).is_(None))
        .values(read_at=utcnow())
    )
    await commit(session)


async def missed_since(
    session: AsyncSession, user_id: int, since: int, *, limit: int = REPLAY_BATCH
) -> list[StoredNotification]:
    """The user's notifications with an id above `since`, oldest first, one batch."""
    parameters = {"user_id": user_id, "since": since, "limit": limit}
    result = await execute(session, _MISSED, parameters)
    return [StoredNotification.model_validate(row) for row in result.mappings()]

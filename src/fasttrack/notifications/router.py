"""The notification inbox (SPEC §5 Notifications)."""

from typing import Annotated

from fastapi import APIRouter, Query, status

from fasttrack.auth.dependencies import CurrentUser
from fasttrack.core.db import IdPath, SessionDep, UnitOfWorkRoute
from fasttrack.core.errors import problem_responses
from fasttrack.core.pagination import Page, PageParams, PageResult
from fasttrack.notifications import service as notification_service
from fasttrack.notifications.models import NotificationRead

router = APIRouter(prefix="/notifications", tags=["notifications"], route_class=UnitOfWorkRoute)


@router.get("", response_model=Page[NotificationRead], responses=problem_responses(401, 422))
async def list_notifications(
    user: CurrentUser,
    session: SessionDep,
    page: PageParams,
    unread: Annotated[
        bool | None, Query(description="`true`: only unread; `false`: only read.")
    ] = None,
) -> PageResult[NotificationRead]:
    """The caller's notifications, newest first."""
    return await notification_service.list_notifications(session, user.id, page, unread=unread)


@router.post("/read-all", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(401))
async def mark_all_notifications_read(user: CurrentUser, session: SessionDep) -> None:
    """Mark every notification of the caller read."""
    await notification_service.mark_all_read(session, user)


@router.post(
    "/{notification_id}/read",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 404, 422),
)
async def mark_notification_read(
    notification_id: IdPath, user: CurrentUser, session: SessionDep
) -> None:
    """Mark one of the caller's notifications read (idempotent); 404 if it is not theirs."""
    await notification_service.mark_read(session, user, notification_id)

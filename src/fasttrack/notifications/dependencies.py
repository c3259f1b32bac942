"""Dependencies of the notifications domain."""

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from fasttrack.notifications.email import EmailSender


async def get_email_sender(connection: HTTPConnection) -> EmailSender:
    sender: EmailSender = connection.app.state.email_sender
    return sender


EmailSenderDep = Annotated[EmailSender, Depends(get_email_sender)]

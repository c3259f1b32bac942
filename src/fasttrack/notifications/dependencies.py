"""Dependencies of the notifications domain."""

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from fasttrack.notifications.email import EmailSender
from fasttrack.notifications.hub import Hub


async def get_email_sender(connection: HTTPConnection) -> EmailSender:
    sender: EmailSender = connection.app.state.email_sender
    return sender


async def get_hub(connection: HTTPConnection) -> Hub:
    hub: Hub = connection.app.state.hub
    return hub


EmailSenderDep = Annotated[EmailSender, Depends(get_email_sender)]
HubDep = Annotated[Hub, Depends(get_hub)]

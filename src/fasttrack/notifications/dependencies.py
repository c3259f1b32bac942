"""Dependencies of the notifications domain."""

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from fasttrack.notifications.hub import Hub


async def get_hub(connection: HTTPConnection) -> Hub:
    hub: Hub = connection.app.state.hub
    return hub


HubDep = Annotated[Hub, Depends(get_hub)]

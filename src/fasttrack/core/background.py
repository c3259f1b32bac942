"""Work that runs after the answer: isolated, logged, never fatal to the request."""

import logging
import uuid
from collections.abc import Awaitable, Callable

from fasttrack.core.logging import request_id_var

logger = logging.getLogger("fasttrack.background")

Job = Callable[[], Awaitable[None]]


def logged(name: str, job: Job) -> Job:
    """`job`, logging its failure with its name, its own id and the request's id instead
    of breaking the request that scheduled it."""
    job_id = str(uuid.uuid4())
    request_id = request_id_var.get()

    async def run() -> None:
        request_id_var.set(request_id)
        try:
            await job()
        except Exception:
            logger.exception(
                "background job %s failed", name, extra={"job": name, "job_id": job_id}
            )

    return run

"""Work scheduled to run after the response: isolated, logged, never fatal to the request."""

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import ParamSpec

from fastapi import BackgroundTasks

from fasttrack.core.logging import request_id_var

logger = logging.getLogger("fasttrack.background")

P = ParamSpec("P")


class BackgroundJobs:
    """Schedules coroutines on FastAPI's `BackgroundTasks` with an id and error logging.

    A job runs after the response is sent, opens whatever it needs (its own database
    session), and a failure is logged with the job and request ids instead of breaking
    the request that scheduled it.
    """

    def __init__(self, tasks: BackgroundTasks) -> None:
        self._tasks = tasks

    def add(
        self, name: str, job: Callable[P, Awaitable[None]], *args: P.args, **kwargs: P.kwargs
    ) -> None:
        job_id = str(uuid.uuid4())
        request_id = request_id_var.get()

        async def run() -> None:
            request_id_var.set(request_id)
            try:
                await job(*args, **kwargs)
            except Exception:
                logger.exception(
                    "background job %s failed", name, extra={"job": name, "job_id": job_id}
                )

        self._tasks.add_task(run)

"""Structured logging: one JSON object per line, each stamped with the request id."""

import logging
import re
import sys
from contextvars import ContextVar
from typing import Final

from pythonjsonlogger.json import JsonFormatter

from fasttrack.core.config import LogFormat, Settings

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

CONSOLE_FORMAT: Final = "%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s"
JSON_FIELDS: Final = ("levelname", "name", "message", "request_id")


# The WebSocket takes its access token in the query string (SPEC §7), and uvicorn logs
# every handshake with the full path: the token must not reach the logs with it.
_TOKEN_IN_QUERY: Final = re.compile(r"([?&]token=)[^&\s\"']+")


class TokenRedactingFilter(logging.Filter):
    """Replaces the value of every `token=` query parameter in a record's message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "token=" in message:
            record.msg, record.args = _TOKEN_IN_QUERY.sub(r"\1[redacted]", message), None
        return True


class RequestIdFilter(logging.Filter):
    """Copies the current request id (or None outside a request) onto every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.addFilter(TokenRedactingFilter())
    if settings.log_format is LogFormat.json:
        handler.setFormatter(
            JsonFormatter(
                JSON_FIELDS,
                rename_fields={"levelname": "level", "name": "logger"},
                timestamp="time",
            )
        )
    else:
        handler.setFormatter(logging.Formatter(CONSOLE_FORMAT))

    for name in ("fasttrack", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(settings.log_level)
        logger.propagate = False
    # The request middleware writes the access log, with request id and route template.
    logging.getLogger("uvicorn.access").disabled = True

"""Pure ASGI middleware shared by every route: request ids, access log, security headers."""

import json
import logging
import re
import time
import uuid
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fasttrack.core.errors import PROBLEM_MEDIA_TYPE, problem_body
from fasttrack.core.logging import request_id_var

access_logger = logging.getLogger("fasttrack.access")
error_logger = logging.getLogger("fasttrack.errors")

REQUEST_ID_HEADER: Final = b"x-request-id"
_SANE_REQUEST_ID: Final = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def _incoming_request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            if _SANE_REQUEST_ID.fullmatch(value):
                return str(value.decode())
            break
    return str(uuid.uuid4())


class RequestContextMiddleware:
    """Gives each request an id (the client's, if sane), logs it, and renders crashes.

    It wraps every other middleware but the security headers, so an unexpected exception
    from anywhere below still becomes a problem-details 500 with the request id and the
    security headers, and the traceback goes to the log, never to the client.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope)
        request_id_var.set(request_id)
        header = (REQUEST_ID_HEADER, request_id.encode())
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_request_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        except Exception:
            error_logger.exception("unhandled error on %s %s", scope.get("method"), scope["path"])
            if response_started or scope["type"] != "http":
                raise
            await self._send_internal_error(scope, send_with_request_id)
        finally:
            if scope["type"] == "http" and access_logger.isEnabledFor(logging.INFO):
                access_logger.info(
                    "%s %s %d",
                    scope["method"],
                    scope["path"],
                    status,
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    },
                )

    @staticmethod
    async def _send_internal_error(scope: Scope, send: Send) -> None:
        body = json.dumps(
            problem_body(500, "internal_error", "An unexpected error occurred", path=scope["path"])
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 500,
                "headers": [
                    (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


API_CSP: Final = "default-src 'none'; frame-ancestors 'none'"
# Swagger UI and ReDoc run inline bootstrap scripts and ReDoc starts a blob: worker.
DOCS_CSP: Final = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'"
)
_COMMON_HEADERS: Final = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


class SecurityHeadersMiddleware:
    """Adds the security headers of SPEC §3 to every HTTP response."""

    def __init__(self, app: ASGIApp, *, docs_prefixes: tuple[str, ...]) -> None:
        self.app = app
        self.docs_prefixes = docs_prefixes
        self._api_headers = [*_COMMON_HEADERS, (b"content-security-policy", API_CSP.encode())]
        self._docs_headers = [*_COMMON_HEADERS, (b"content-security-policy", DOCS_CSP.encode())]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        is_docs = scope["path"].startswith(self.docs_prefixes)
        extra = self._docs_headers if is_docs else self._api_headers

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)

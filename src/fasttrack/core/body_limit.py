"""The request body limit of SPEC §3: a body over 1 MiB answers 413 before it is read further."""

from typing import Final

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fasttrack.core.errors import problem

MAX_BODY_BYTES: Final = 1024 * 1024
CONTENT_LENGTH_HEADER: Final = b"content-length"
# The rest of a refused body is never read, so the connection cannot carry another request.
_CLOSE_CONNECTION: Final = {"Connection": "close"}


class BodyTooLarge(Exception):
    """Raised into the application from `receive` once the body has passed the limit."""


class MalformedContentLength(ValueError):
    """A `Content-Length` that is not one length."""


def declares_more_than(scope: Scope, limit: int) -> bool:
    """Whether the request's `Content-Length` declares a body longer than `limit` bytes.

    No header declares nothing (False). Repeats of one value count as that value (RFC 9110
    §8.6); anything but ASCII digits, or values that differ, raise `MalformedContentLength`.
    """
    values = {
        part.strip()
        for name, value in scope["headers"]
        if name == CONTENT_LENGTH_HEADER
        for part in value.split(b",")
    }
    if not values:
        return False
    if len(values) > 1:
        raise MalformedContentLength("several different lengths")
    (value,) = values
    if not value.isdigit():  # bytes.isdigit() is ASCII-only, unlike str.isdigit()
        raise MalformedContentLength("not a number")
    digits = value.lstrip(b"0")
    # A number with more digits than the limit is larger; thousands of digits are not parsed.
    return len(digits) > len(str(limit)) or int(digits or b"0") > limit


class BodyLimitMiddleware:
    """Answers 413 `payload_too_large` to any HTTP request whose body exceeds the limit.

    A `Content-Length` over the limit is refused at once: the application is not called and
    no byte of the body is read. A body without one (chunked), or longer than it claimed,
    is counted as the application pulls it through `receive`; nothing is buffered here.
    The message that takes the count past the limit is not handed on: `receive` raises
    `BodyTooLarge` instead, and whatever the application then answers gives way to the
    413. If the application had already started its response, the exception propagates,
    which ends the connection. A body of exactly the limit is accepted.

    A malformed `Content-Length` (non-digits, or several values that differ) answers 400
    `bad_request`: the body's length, and so where the next request starts, is unknown.
    Servers such as uvicorn refuse these themselves; this covers any other.

    Refusals carry `Connection: close`, since the unread rest of the body would otherwise
    be taken for the next request. The middleware sits inside the request-context and
    security-header middleware, so a refusal carries the request id and the security
    headers, and outside the rate limiter and every route, so 413 answers before 429,
    401 or 422. WebSocket and lifespan scopes pass through untouched.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            too_large = declares_more_than(scope, self.max_body_bytes)
        except MalformedContentLength:
            detail = "Malformed Content-Length"
            await self._refuse(scope, receive, send, status=400, code="bad_request", detail=detail)
            return
        if too_large:
            await self._refuse_too_large(scope, receive, send)
            return

        received = 0
        exceeded = False
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                raise BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if exceeded and not response_started:
                # The application's answer to the interrupted read (FastAPI makes it a
                # 400) is dropped: the 413 below answers instead.
                return
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not exceeded or response_started:
                raise
        if exceeded and not response_started:
            await self._refuse_too_large(scope, receive, send)

    async def _refuse_too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"The request body is larger than {self.max_body_bytes} bytes"
        await self._refuse(
            scope, receive, send, status=413, code="payload_too_large", detail=detail
        )

    @staticmethod
    async def _refuse(
        scope: Scope, receive: Receive, send: Send, *, status: int, code: str, detail: str
    ) -> None:
        response = problem(Request(scope), status, code, detail, headers=_CLOSE_CONNECTION)
        await response(scope, receive, send)

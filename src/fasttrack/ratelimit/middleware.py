"""Pure ASGI rate limiting: a sliding window per user or address, stricter on the auth routes."""

import json
from collections.abc import Collection
from typing import Final

from limits import RateLimitItem
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fasttrack.core.errors import PROBLEM_MEDIA_TYPE, problem_body
from fasttrack.core.metrics import Metrics
from fasttrack.ratelimit.keys import ClientKeys
from fasttrack.ratelimit.limiter import RateLimiter

LIMIT_HEADER: Final = b"x-ratelimit-limit"
REMAINING_HEADER: Final = b"x-ratelimit-remaining"
RETRY_AFTER_HEADER: Final = b"retry-after"
PROBLEM_CONTENT_TYPE: Final = (b"content-type", PROBLEM_MEDIA_TYPE.encode())


class _Policy:
    __slots__ = ("item", "limit_header", "rejections")

    def __init__(self, item: RateLimitItem, metrics: Metrics, name: str) -> None:
        self.item = item
        self.limit_header = (LIMIT_HEADER, str(item.amount).encode())
        self.rejections = metrics.rate_limit_rejections.labels(name)


class RateLimitMiddleware:
    """Counts each request against a sliding window and answers 429 past the limit.

    Requests to `auth_paths` (login, register, token, refresh) count per client address
    against the stricter `auth_limit`, as they are what a password-guessing client
    hammers. Everything else counts against `default_limit`, per user when a valid access
    token is sent, else per address. Paths starting with an `exempt_prefixes` entry
    (health, metrics, docs) are not counted. Every counted response carries
    `X-RateLimit-Limit` and `X-RateLimit-Remaining`; a refusal is a 429 problem with an
    integer `Retry-After` of at least one second.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: RateLimiter,
        keys: ClientKeys,
        default_limit: RateLimitItem,
        auth_limit: RateLimitItem,
        auth_paths: Collection[str],
        exempt_prefixes: tuple[str, ...],
        metrics: Metrics,
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.keys = keys
        self.default = _Policy(default_limit, metrics, "default")
        self.auth = _Policy(auth_limit, metrics, "auth")
        self.auth_paths = frozenset(auth_paths)
        self.exempt_prefixes = exempt_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt_prefixes):
            await self.app(scope, receive, send)
            return
        if scope["path"] in self.auth_paths:
            policy, key = self.auth, self.keys.address(scope)
        else:
            policy, key = self.default, self.keys.user_or_address(scope)
        decision = await self.limiter.hit(policy.item, key)
        headers = [policy.limit_header, (REMAINING_HEADER, str(decision.remaining).encode())]
        if not decision.allowed:
            policy.rejections.inc()
            await self._refuse(scope, send, headers, decision.retry_after)
            return

        async def send_with_limit_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *headers]
            await send(message)

        await self.app(scope, receive, send_with_limit_headers)

    @staticmethod
    async def _refuse(
        scope: Scope, send: Send, headers: list[tuple[bytes, bytes]], retry_after: int
    ) -> None:
        detail = f"Too many requests; retry in {retry_after} s"
        body = json.dumps(problem_body(429, "rate_limited", detail, path=scope["path"])).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    PROBLEM_CONTENT_TYPE,
                    (b"content-length", str(len(body)).encode()),
                    (RETRY_AFTER_HEADER, str(retry_after).encode()),
                    *headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

"""Prometheus metrics: one registry per application, and the middleware that feeds it."""

import time
from typing import Any, Final

from fastapi.routing import iter_route_contexts
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

METRICS_MEDIA_TYPE: Final = CONTENT_TYPE_LATEST
# Requests that never reached a route (404s, rate-limit rejections, CORS preflights)
# share one label, so unknown paths cannot grow the number of series.
UNMATCHED_ROUTE: Final = "<unmatched>"
OTHER_METHOD: Final = "OTHER"
KNOWN_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)
LATENCY_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class Metrics:
    """The service's metrics, registered in a registry of their own.

    A registry per application (not prometheus_client's global one) lets tests and
    tools build many apps in one process. The WebSocket hub reports connections and
    deliveries through the methods below; the rate limiter counts `rate_limit_rejections`.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "fasttrack_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.request_duration = Histogram(
            "fasttrack_http_request_duration_seconds",
            "Time to answer an HTTP request, by method, route template and status.",
            ("method", "route", "status"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ws_connections = Gauge(
            "fasttrack_websocket_connections",
            "WebSocket connections open now.",
            registry=self.registry,
        )
        self.rate_limit_rejections = Counter(
            "fasttrack_rate_limit_rejections",
            "Requests refused with 429, by limit (default or auth).",
            ("limit",),
            registry=self.registry,
        )
        self.notifications_delivered = Counter(
            "fasttrack_notifications_delivered",
            "Notifications pushed to an open WebSocket connection.",
            registry=self.registry,
        )
        # Label lookups take a lock and hash the values; keep the children they return.
        self._series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    # The WebSocket hub reports through these (notifications.hub.HubObserver).
    def connection_opened(self) -> None:
        self.ws_connections.inc()

    def connection_closed(self) -> None:
        self.ws_connections.dec()

    def notification_delivered(self) -> None:
        self.notifications_delivered.inc()

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        if method not in KNOWN_METHODS:
            method = OTHER_METHOD
        key = (method, route, status)
        series = self._series.get(key)
        if series is None:
            labels = (method, route, str(status))
            series = self._series[key] = (
                self.requests.labels(*labels),
                self.request_duration.labels(*labels),
            )
        series[0].inc()
        series[1].observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


def _route_templates(routes: list[BaseRoute]) -> dict[int, str]:
    templates: dict[int, str] = {}
    for context in iter_route_contexts(routes):
        if context.path_format is None:
            continue
        route = context.original_route
        templates[id(route)] = context.path_format
        handler = getattr(route, "endpoint", None) or getattr(route, "app", None)
        templates.setdefault(id(handler), context.path_format)
    return templates


class MetricsMiddleware:
    """Times every HTTP request and counts it under its route template.

    It reads the route after the app ran: the router leaves the matched route in the
    scope. A route of an included router knows only its own part of the path
    (`/users/{user_id}`), so the full template (`/api/v1/users/{user_id}`, never
    `/api/v1/users/42`) comes from the app's route table, looked up once per route.
    """

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        # Keyed by id(): routes compare by value and are unhashable; they live as long
        # as the app does.
        self._templates: dict[int, str] = {}

    def _template(self, scope: Scope) -> str:
        # FastAPI leaves the matched API route in the scope; plain routes and mounts
        # (the docs assets) leave only their endpoint.
        matched: Any = scope.get("route") or scope.get("endpoint")
        if matched is None:
            return UNMATCHED_ROUTE
        template = self._templates.get(id(matched))
        if template is None:
            self._templates = _route_templates(scope["app"].routes)
            template = self._templates.setdefault(
                id(matched), getattr(matched, "path", UNMATCHED_ROUTE)
            )
        return template

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_recording_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_recording_status)
        finally:
            self.metrics.observe_request(
                scope["method"], self._template(scope), status, time.perf_counter() - started
            )

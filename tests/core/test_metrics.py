"""GET /metrics: request counts and latency by route template, WebSocket and notification gauges."""

from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.types import Message, Receive, Scope, Send

from fasttrack.core.metrics import Metrics, MetricsMiddleware
from tests.factories import login, make_admin


@pytest.fixture
async def root(app: FastAPI) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as http:
        yield http


async def _sample(root: AsyncClient, name: str, **labels: str) -> float:
    response = await root.get("/metrics")
    assert response.status_code == 200
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


async def test_metrics_are_prometheus_text(app: FastAPI, root: AsyncClient) -> None:
    response = await root.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    assert "# TYPE fasttrack_http_requests_total counter" in response.text
    assert "# TYPE fasttrack_http_request_duration_seconds histogram" in response.text
    assert "/metrics" not in app.openapi()["paths"]


async def test_requests_are_counted_by_route_template(
    root: AsyncClient, client: AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    headers = await login(client, admin)
    template = {"method": "GET", "route": "/api/v1/users/{user_id}", "status": "200"}
    before = await _sample(root, "fasttrack_http_requests_total", **template)
    latency_before = await _sample(
        root, "fasttrack_http_request_duration_seconds_count", **template
    )

    for _ in range(2):
        assert (await client.get(f"/users/{admin.id}", headers=headers)).status_code == 200

    assert await _sample(root, "fasttrack_http_requests_total", **template) == before + 2
    assert (
        await _sample(root, "fasttrack_http_request_duration_seconds_count", **template)
        == latency_before + 2
    )
    text = (await root.get("/metrics")).text
    assert f"/api/v1/users/{admin.id}" not in text


async def test_unknown_paths_share_one_label(root: AsyncClient, client: AsyncClient) -> None:
    labels = {"method": "GET", "route": "<unmatched>", "status": "404"}
    before = await _sample(root, "fasttrack_http_requests_total", **labels)
    for number in range(3):
        assert (await client.get(f"/no-such-thing/{number}")).status_code == 404
    assert await _sample(root, "fasttrack_http_requests_total", **labels) == before + 3
    assert "/no-such-thing" not in (await root.get("/metrics")).text


def test_unusual_methods_are_one_label() -> None:
    metrics = Metrics()
    metrics.observe_request("BREW", "<unmatched>", 405, 0.001)
    metrics.observe_request("PROPFIND", "<unmatched>", 405, 0.001)
    text = metrics.render().decode()
    assert 'method="OTHER",route="<unmatched>",status="405"} 2.0' in text
    assert "BREW" not in text


async def test_websocket_and_notification_metrics_are_exposed(
    app: FastAPI, root: AsyncClient
) -> None:
    metrics: Metrics = app.state.metrics
    open_before = await _sample(root, "fasttrack_websocket_connections")
    delivered_before = await _sample(root, "fasttrack_notifications_delivered_total")

    metrics.ws_connections.inc()
    metrics.ws_connections.inc()
    metrics.ws_connections.dec()
    metrics.notifications_delivered.inc()
    try:
        assert await _sample(root, "fasttrack_websocket_connections") == open_before + 1
        assert (
            await _sample(root, "fasttrack_notifications_delivered_total") == delivered_before + 1
        )
    finally:
        metrics.ws_connections.dec()


async def test_an_unexpected_error_is_counted_as_500() -> None:
    metrics = Metrics()

    async def crash(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    async def no_receive() -> Message:
        raise AssertionError("not called")

    async def no_send(message: Message) -> None:
        raise AssertionError("not called")

    middleware = MetricsMiddleware(crash, metrics=metrics)
    with pytest.raises(RuntimeError, match="boom"):
        await middleware({"type": "http", "method": "GET", "path": "/x"}, no_receive, no_send)
    assert 'route="<unmatched>",status="500"} 1.0' in metrics.render().decode()


def test_each_app_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.notifications_delivered.inc()
    assert "fasttrack_notifications_delivered_total 1.0" in first.render().decode()
    assert "fasttrack_notifications_delivered_total 0.0" in second.render().decode()


async def test_static_assets_are_one_route(root: AsyncClient) -> None:
    labels = {"method": "GET", "route": "/static/docs/{path}", "status": "200"}
    before = await _sample(root, "fasttrack_http_requests_total", **labels)
    assert (await root.get("/static/docs/swagger-ui.css")).status_code == 200
    assert (await root.get("/static/docs/favicon.png")).status_code == 200
    assert await _sample(root, "fasttrack_http_requests_total", **labels) == before + 2

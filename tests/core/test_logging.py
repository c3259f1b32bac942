"""Logs: one line per record, each carrying the id of the request it belongs to."""

import json
import logging

import pytest
from httpx import ASGITransport, AsyncClient

from fasttrack.core.config import LogFormat
from tests.conftest import AppFactory


async def _get(app_factory: AppFactory, log_format: LogFormat, path: str) -> None:
    async with app_factory(log_level="info", log_format=log_format) as application:
        application.add_api_route("/fail", _fail)
        transport = ASGITransport(app=application)
        async with AsyncClient(transport=transport, base_url="http://test") as http:
            await http.get(path, headers={"X-Request-ID": "trace-me-42"})


async def _fail() -> None:
    raise RuntimeError("boom")


async def test_json_log_lines_carry_the_request_id(
    app_factory: AppFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    await _get(app_factory, LogFormat.json, "/fail")

    records = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    of_request = [record for record in records if record.get("request_id") == "trace-me-42"]
    assert {record["logger"] for record in of_request} == {"fasttrack.errors", "fasttrack.access"}
    access = next(record for record in of_request if record["logger"] == "fasttrack.access")
    assert (access["level"], access["message"]) == ("INFO", "GET /fail 500")
    assert "time" in access


async def test_console_log_lines_carry_the_request_id(
    app_factory: AppFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    await _get(app_factory, LogFormat.console, "/health")

    lines = capsys.readouterr().err.splitlines()
    assert any("fasttrack.access [trace-me-42] GET /health 200" in line for line in lines), lines


async def test_the_uvicorn_access_log_is_replaced_by_ours(app_factory: AppFactory) -> None:
    logging.getLogger("uvicorn.access").disabled = False
    async with app_factory():
        assert logging.getLogger("uvicorn.access").disabled

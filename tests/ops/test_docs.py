"""/docs and /redoc work offline: every asset they load is served by the app itself."""

import re
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

ASSET_REFERENCE = re.compile(r"""(?:src|href|url)\s*[=:(]\s*['"]([^'"]+)['"]""")


@pytest.fixture
async def root(app: FastAPI) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client:
        yield client


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
async def test_docs_pages_reference_only_local_assets(root: AsyncClient, path: str) -> None:
    page = await root.get(path)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    references = ASSET_REFERENCE.findall(page.text)
    assets = [ref for ref in references if ref != "/openapi.json"]
    assert assets, page.text
    for asset in assets:
        assert asset.startswith("/static/"), asset
        fetched = await root.get(asset)
        assert fetched.status_code == 200, asset
        assert len(fetched.content) > 1000
    for external in ("http://", "https://", "//", "cdn.jsdelivr", "fonts.googleapis", "unpkg"):
        assert external not in page.text.replace("http://www.w3.org", "")


async def test_swagger_ui_logs_in_through_the_token_endpoint(root: AsyncClient) -> None:
    page = (await root.get("/docs")).text
    schema = (await root.get("/openapi.json")).json()
    redirect = await root.get("/docs/oauth2-redirect")
    assert "oauth2RedirectUrl: window.location.origin + '/docs/oauth2-redirect'" in page
    assert '"validatorUrl": null' in page
    flows = schema["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]
    assert flows["password"]["tokenUrl"] == "/api/v1/auth/token"
    assert redirect.status_code == 200
    assert "oauth2" in redirect.text


async def test_docs_pages_are_not_in_the_schema(app: FastAPI) -> None:
    paths = app.openapi()["paths"]
    assert not {"/docs", "/docs/oauth2-redirect", "/redoc"} & paths.keys()

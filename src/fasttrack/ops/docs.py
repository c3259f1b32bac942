"""Swagger UI and ReDoc served with their own assets, so the docs work with no internet."""

from pathlib import Path
from typing import Final

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

# swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js and favicon.png, as shipped
# (and kept current) by the fastapi-offline package.
ASSETS_DIRECTORY: Final = Path(fastapi_offline.__file__).parent / "static"
ASSETS_PATH: Final = "/static/docs"
SWAGGER_PATH: Final = "/docs"
OAUTH2_REDIRECT_PATH: Final = "/docs/oauth2-redirect"
REDOC_PATH: Final = "/redoc"
# Every path the docs use, for the docs CSP and the rate-limit exemption.
DOCS_PREFIXES: Final = (SWAGGER_PATH, REDOC_PATH, ASSETS_PATH)


def install_offline_docs(app: FastAPI) -> None:
    """Serve `/docs` (with `/docs/oauth2-redirect`) and `/redoc` from local assets.

    Create the app with `docs_url=None, redoc_url=None` so FastAPI's CDN-backed pages
    are not registered as well.
    """
    assert app.openapi_url is not None
    openapi_url = app.openapi_url
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIRECTORY), name="docs-assets")

    # Rendered once: the pages depend on nothing but the app's title and settings.
    swagger_page = get_swagger_ui_html(
        openapi_url=openapi_url,
        title=f"{app.title} - Swagger UI",
        oauth2_redirect_url=OAUTH2_REDIRECT_PATH,
        swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_PATH}/favicon.png",
        # No spec validator badge: it would send the spec to validator.swagger.io.
        swagger_ui_parameters={"validatorUrl": None},
    ).body
    redirect_page = get_swagger_ui_oauth2_redirect_html().body
    redoc_page = get_redoc_html(
        openapi_url=openapi_url,
        title=f"{app.title} - ReDoc",
        redoc_js_url=f"{ASSETS_PATH}/redoc.standalone.js",
        redoc_favicon_url=f"{ASSETS_PATH}/favicon.png",
        with_google_fonts=False,
    ).body

    @app.get(SWAGGER_PATH, include_in_schema=False)
    async def get_swagger_ui() -> HTMLResponse:
        return HTMLResponse(swagger_page)

    @app.get(OAUTH2_REDIRECT_PATH, include_in_schema=False)
    async def get_swagger_ui_oauth2_redirect() -> HTMLResponse:
        return HTMLResponse(redirect_page)

    @app.get(REDOC_PATH, include_in_schema=False)
    async def get_redoc() -> HTMLResponse:
        return HTMLResponse(redoc_page)

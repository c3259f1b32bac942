"""Domain exceptions and their one rendering: RFC 9457 problem details."""

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, ClassVar, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from fasttrack.core.logging import request_id_var

logger = logging.getLogger("fasttrack.errors")

PROBLEM_MEDIA_TYPE: Final = "application/problem+json"
BEARER_CHALLENGE: Final = {"WWW-Authenticate": "Bearer"}
# A lost or saturated database: the client should retry, the service should not crash.
# OSError: asyncpg raises connection failures (refused, unreachable, timed out) as they
# come from the socket, and SQLAlchemy wraps only the driver's own DBAPI errors.
DATABASE_UNAVAILABLE: Final = (OperationalError, InterfaceError, PoolTimeoutError, OSError)
# SQLSTATE classes of a server that is gone, starting, shutting down or out of resources
# (08 connection exception, 57P operator intervention, 53 insufficient resources). asyncpg
# reports these as plain driver errors, which SQLAlchemy wraps in a bare DBAPIError.
UNAVAILABLE_SQLSTATES: Final = ("08", "57P", "53")


def is_database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` means the database cannot be reached now, rather than a bug."""
    if isinstance(exc, DATABASE_UNAVAILABLE):
        return True
    if isinstance(exc, DBAPIError):
        sqlstate = getattr(exc.orig, "sqlstate", None)
        return exc.connection_invalidated or (
            isinstance(sqlstate, str) and sqlstate.startswith(UNAVAILABLE_SQLSTATES)
        )
    return False


class AppError(Exception):
    """Base of every error the API answers on purpose; subclasses set status and code."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    default_detail: ClassVar[str] = "The request could not be processed"

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        errors: list[dict[str, Any]] | None = None,
    ):
        self.detail = detail or self.default_detail
        self.headers = dict(headers or {})
        self.errors = errors
        super().__init__(self.detail)


class Unauthorized(AppError):
    status, code = 401, "unauthorized"
    default_detail = "Authentication is required"

    def __init__(self, detail: str | None = None) -> None:
        # RFC 9110 requires a challenge on every 401.
        super().__init__(detail, headers=BEARER_CHALLENGE)


class Forbidden(AppError):
    status, code = 403, "forbidden"
    default_detail = "You are not allowed to do this"


class NotFound(AppError):
    status, code = 404, "not_found"
    default_detail = "The resource does not exist"


class Conflict(AppError):
    status, code = 409, "conflict"
    default_detail = "The request conflicts with the current state of the resource"


class PreconditionFailed(AppError):
    status, code = 412, "precondition_failed"
    default_detail = "The resource has changed since you last read it"


class UnprocessableEntity(AppError):
    status, code = 422, "validation_error"
    default_detail = "The request is not valid"


class ServiceUnavailable(AppError):
    status, code = 503, "service_unavailable"
    default_detail = "A backing service is unavailable; try again shortly"


class ProblemDetailsError(BaseModel):
    """One entry of `errors` in a validation problem."""

    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """An RFC 9457 problem details document, as every error is answered."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "type": "about:blank",
                "title": "Not Found",
                "status": 404,
                "detail": "Task not found",
                "instance": "/api/v1/tasks/42",
                "code": "not_found",
                "request_id": "7b0f7d4c-7d27-4e4b-9a4e-1f0e3c3b7c1d",
            }
        }
    )

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str
    code: str
    request_id: str | None
    errors: list[ProblemDetailsError] | None = None


def problem_body(status: int, code: str, detail: str, *, path: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": path,
        "code": code,
        "request_id": request_id_var.get(),
        **extra,
    }


def problem(
    request: Request,
    status: int,
    code: str,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = problem_body(status, code, detail, path=request.url.path, **extra)
    return JSONResponse(body, status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the problems a route may answer."""
    return {
        status: {
            "model": Problem,
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


_HTTP_CODES: Final = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


async def _on_app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    extra = {} if exc.errors is None else {"errors": exc.errors}
    return problem(request, exc.status, exc.code, exc.detail, headers=exc.headers, **extra)


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this path: the `Allow` of a 405 (RFC 9110 §15.5.6).

    The router answers 405 from the first route whose path matched, which knows only its
    own method, while e.g. GET, PATCH and DELETE of one resource are separate routes.
    """
    path = request.scope["path"]
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        regex = getattr(route, "path_regex", None)
        if route.methods and regex is not None and regex.match(path):
            methods |= route.methods
    return ", ".join(sorted(methods))


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
        # A JSON body that is not UTF-8 fails as a malformed one does: 422, like any
        # other body that cannot be read as JSON, rather than FastAPI's bare 400.
        errors = [{"loc": ["body"], "msg": "The body is not valid UTF-8", "type": "json_invalid"}]
        return problem(request, 422, "validation_error", "The request is not valid", errors=errors)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    detail = exc.detail if exc.status_code != 404 else "No such endpoint"
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
    return problem(request, exc.status_code, code, str(detail), headers=headers)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Only loc/msg/type go out: pydantic's `input` would echo passwords and tokens back.
    errors = [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error["type"]}
        for error in exc.errors()
    ]
    return problem(request, 422, "validation_error", "The request is not valid", errors=errors)


async def _on_database_error(request: Request, exc: Exception) -> JSONResponse:
    if not is_database_unavailable(exc):
        raise exc  # a bug, not an outage: a logged 500 (see RequestContextMiddleware)
    logger.warning("database unavailable: %s: %s", exc.__class__.__name__, exc)
    return problem(
        request,
        503,
        ServiceUnavailable.code,
        "The database is unavailable; try again shortly",
        headers={"Retry-After": "1"},
    )


def install_error_handlers(app: FastAPI) -> None:
    """Route every expected failure through `problem()`.

    Unexpected exceptions are rendered by `RequestContextMiddleware`, which sits inside
    Starlette's server-error middleware, so a 500 still carries the request id and the
    security headers.
    """
    app.add_exception_handler(AppError, _on_app_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    for database_error in (DBAPIError, PoolTimeoutError, OSError):
        app.add_exception_handler(database_error, _on_database_error)

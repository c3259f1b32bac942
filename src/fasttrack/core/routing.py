"""Absolute URLs of named routes, for `Location` headers."""

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.datastructures import URLPath
from starlette.requests import HTTPConnection


class RoutePaths:
    """Each named route's path template, read once from the application's routes.

    `request.url_for` walks the whole route table, router by router, on every call: a
    measurable share of a create request. The template of a route never changes.
    """

    def __init__(self, app: FastAPI) -> None:
        self._app = app
        self._templates: dict[str, str] = {}

    def url_for(self, request: HTTPConnection, name: str, **path_params: int) -> str:
        """What `request.url_for(name, **path_params)` answers, for integer parameters."""
        if not self._templates:
            self._templates = {
                getattr(context.original_route, "name", ""): context.path_format
                for context in iter_route_contexts(self._app.routes)
                if context.path_format is not None
            }
        path = self._templates[name].format(**path_params)
        return str(URLPath(path).make_absolute_url(base_url=request.base_url))


def url_for(request: HTTPConnection, name: str, **path_params: int) -> str:
    """The absolute URL of the route `name` (see RoutePaths)."""
    route_paths: RoutePaths = request.app.state.route_paths
    return route_paths.url_for(request, name, **path_params)

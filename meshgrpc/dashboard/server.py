"""The control plane's HTTP pages (the `--http` port, default 127.0.0.1:15014):

    /                  the dashboard (static/index.html, app.js, app.css)
    /api/v1/mesh       the dashboard's data as JSON (model.py; its fields are documented in the README, "Seeing the mesh")
    /metrics           the control plane's Prometheus metrics

Read-only, served on the admin HTTP server (admin/http.py). The page polls the
JSON every second; each request is built from the control plane's state at that
moment.
"""

from __future__ import annotations

import importlib.resources
import json
from collections.abc import Callable, Sequence

from meshgrpc.admin.http import Handler, Response, no_query
from meshgrpc.controlplane.load_book import LoadBook
from meshgrpc.dashboard.model import mesh_view

STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
          "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/static/app.css": ("app.css", "text/css; charset=utf-8")}


def static_page(name: str, content_type: str) -> Callable[[], Response]:
    body = importlib.resources.files("meshgrpc.dashboard").joinpath("static", name).read_bytes()
    return lambda: (200, content_type, body)


class DashboardPages:
    """The pages, reading `cache` (the served snapshot), `book`, the discovery
    servers' statuses, the served versions and the metrics at request time."""

    def __init__(self, cache, book: LoadBook, servers: Sequence, versions: Callable[[], dict[str, str]],
                 metrics) -> None:
        self._cache, self._book, self._servers, self._versions = cache, book, servers, versions
        self._metrics = metrics

    def routes(self) -> dict[str, Handler]:
        pages = {path: static_page(name, kind) for path, (name, kind) in STATIC.items()}
        pages["/api/v1/mesh"] = self.mesh
        pages["/metrics"] = self.metrics
        return {path: no_query(page) for path, page in pages.items()}

    def mesh(self) -> Response:
        statuses = [p for server in self._servers for p in server.proxy_statuses()]
        view = mesh_view(self._cache.current, self._book, statuses, self._versions())
        return 200, "application/json", json.dumps(view, sort_keys=True).encode()

    def metrics(self) -> Response:
        return 200, "text/plain; version=0.0.4; charset=utf-8", self._metrics.render()


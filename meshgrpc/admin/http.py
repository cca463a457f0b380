"""A minimal HTTP/1.1 server for read-only local pages: the proxy's admin
endpoints and the control plane's dashboard and metrics.

It serves GET requests from a table of path -> handler; each handler gets the
query string's parameters (name -> values) and returns (status, content type,
body). It is never on the call path, so it favours being small and bounded over
being fast: one request per connection, request heads capped in size, every read
under a deadline.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections.abc import Mapping
from typing import Callable

log = logging.getLogger(__name__)

Response = tuple[int, str, bytes]
Query = Mapping[str, list[str]]
Handler = Callable[[Query], Response]

MAX_HEAD_BYTES = 16 * 1024
READ_TIMEOUT_S = 5.0
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           500: "Internal Server Error", 503: "Service Unavailable"}


def no_query(page: Callable[[], Response]) -> Handler:
    """A handler for a page that takes no parameters."""
    return lambda query: page()


class AdminServer:
    """Serves `routes` (path -> handler) on host:port; start() binds, close() stops."""

    def __init__(self, routes: dict[str, Handler]) -> None:
        self._routes = routes
        self._server: asyncio.base_events.Server | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._serve, host, port, limit=MAX_HEAD_BYTES)
        bound = self._server.sockets[0].getsockname()
        return bound[0], bound[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
            status, content_type, body = self._respond(head)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        writer.write(
            f"HTTP/1.1 {status} {REASONS.get(status, '')}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n".encode() + body)
        try:
            await asyncio.wait_for(writer.drain(), READ_TIMEOUT_S)
        except (asyncio.TimeoutError, ConnectionError):
            pass
        writer.close()

    def _respond(self, head: bytes) -> Response:
        method, _, rest = head.partition(b" ")
        target, _, query = rest.partition(b" ")[0].decode("latin-1").partition("?")
        handler = self._routes.get(target)
        if handler is None:
            return 404, "text/plain", f"no admin endpoint {target}; try {', '.join(sorted(self._routes))}\n".encode()
        if method not in (b"GET", b"HEAD"):
            return 405, "text/plain", b"GET only\n"
        try:
            return handler(urllib.parse.parse_qs(query, keep_blank_values=True))
        except Exception:  # an admin page must never take the proxy down; the trace goes to the log
            log.exception("admin handler for %s failed", target)
            return 500, "text/plain", b"internal error, see the proxy's log\n"

"""A fake transport for the discovery clients' logic (meshgrpc/xds/client.py's
DiscoveryStream and StreamOpener): the test reads what the client sent and
answers, ends or refuses each stream, with no network.

    opener = FakeOpener()
    client = DiscoveryClient("a:1,b:2", node, subs, on_update, dialer=opener, sleep=...)
    client.start()
    stream = await opener.next_stream()        # the client opened one
    first = await stream.request()             # what it sent
    stream.respond(response); stream.end(RpcError(14, "gone"))
"""

from __future__ import annotations

import asyncio
import contextlib

from meshgrpc.grpcwire import RpcError

WAIT = 5.0   # bound on every wait of a test on the client


class FakeStream:
    """One stream: `sent` holds the client's requests; respond()/end() feed it."""

    def __init__(self, target: str, method: str, accept: bool = True) -> None:
        self.target, self.method = target, method
        self.sent: asyncio.Queue = asyncio.Queue()
        self.closed = False
        self._inbound: asyncio.Queue = asyncio.Queue()
        self._accept = accept

    # -- the client's side (DiscoveryStream) --------------------------------------------
    async def send(self, request) -> None:
        self.sent.put_nowait(request)

    async def recv(self):
        item = await self._inbound.get()
        if isinstance(item, RpcError):
            raise item
        return item

    async def response_headers(self, timeout: float | None = None) -> list:
        if not self._accept:   # a control plane that never answers the stream
            async with asyncio.timeout(timeout):
                await asyncio.Event().wait()
        return []

    # -- the test's side ----------------------------------------------------------------
    def respond(self, response) -> None:
        self._inbound.put_nowait(response)

    def end(self, error: RpcError | None = None) -> None:
        """Ends the stream: OK (None) or with `error`."""
        self._inbound.put_nowait(error)

    async def request(self):
        return await asyncio.wait_for(self.sent.get(), WAIT)

    async def requests(self, n: int) -> list:
        return [await self.request() for _ in range(n)]

    def nothing_sent(self) -> bool:
        return self.sent.empty()


class FakeOpener:
    """Opens FakeStreams; `refuse` holds errors the next connects fail with, in
    order; `accept=False` makes streams the server never accepts."""

    def __init__(self, refuse: list[RpcError] | None = None, accept: bool = True) -> None:
        self.refuse = list(refuse or [])
        self.accept = accept
        self.targets: list[str] = []
        self._opened: asyncio.Queue = asyncio.Queue()

    @contextlib.asynccontextmanager
    async def open_stream(self, target: str, method: str, response_class):
        self.targets.append(target)
        if self.refuse:
            raise self.refuse.pop(0)
        stream = FakeStream(target, method, self.accept)
        self._opened.put_nowait(stream)
        try:
            yield stream
        finally:
            stream.closed = True

    async def next_stream(self) -> FakeStream:
        return await asyncio.wait_for(self._opened.get(), WAIT)

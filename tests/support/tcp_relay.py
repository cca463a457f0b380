"""A TCP relay on 127.0.0.1 that can go silent: `freeze()` stops it reading and
writing in both directions while every connection stays open, the way a host that
vanished or a cut network looks to both ends (no FIN, no RST). For keepalive tests.

    relay = await TcpRelay.start("127.0.0.1:50051")   # relay.address -> 127.0.0.1:PORT
    relay.freeze(); ...; await relay.close()
"""

from __future__ import annotations

import asyncio

from meshgrpc.addresses import split_address


class TcpRelay:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.address = ""
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._tasks: set[asyncio.Task] = set()
        self._writers: list[asyncio.StreamWriter] = []

    @classmethod
    async def start(cls, upstream: str) -> TcpRelay:
        relay = cls(upstream)
        relay._server = await asyncio.start_server(relay._accept, "127.0.0.1", 0)
        relay.address = "127.0.0.1:%d" % relay._server.sockets[0].getsockname()[1]
        return relay

    def freeze(self) -> None:
        self._flowing.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = split_address(self.upstream)
        up_reader, up_writer = await asyncio.open_connection(host, port)
        self._writers += [writer, up_writer]
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.get_running_loop().create_task(self._pump(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        while True:
            await self._flowing.wait()
            data = await source.read(65536)
            await self._flowing.wait()   # what arrived while frozen is held, never delivered
            if not data:
                sink.close()
                return
            sink.write(data)

    async def close(self) -> None:
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

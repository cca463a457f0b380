"""The proxy's side of the load-report stream (meshapi.v1.LoadReporting), as
protocol logic over a small stream interface, so that any gRPC client can carry
it (load_stream.py adapts the one the proxy uses) and tests drive it through a
fake stream.

Protocol (after Envoy's LRS): the first report of a stream carries the node and
no figures; the control plane answers with the interval it wants reports at;
from then on the proxy sends one report per interval, each covering the time
since the previous one, until the stream ends. The proxy reconnects with
exponential backoff and full jitter, to the next of its control-plane addresses.
Time without a stream is not lost: the next report covers it (its `window` says
how long).

Tasks: `start()` runs the loop in an OwnedTask; each stream's reader is a task
the stream's run owns and cancels when the stream ends.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import AsyncContextManager, Protocol

from meshapi.v1 import load_pb2
from meshgrpc.backoff import Backoff
from meshgrpc.config.specs import seconds
from meshgrpc.tasks import OwnedTask

log = logging.getLogger(__name__)

# Bounds on the interval a control plane may ask for: reports neither flood the
# stream nor go stale on the dashboard.
MIN_INTERVAL_S = 0.2
MAX_INTERVAL_S = 60.0
IO_TIMEOUT_S = 10.0


class StreamBroken(Exception):
    """The transport failed; `str()` says how (the adapter maps its client's errors to this)."""


class ReportStream(Protocol):
    async def write(self, report: load_pb2.LoadReport) -> None:
        """Sends one report."""

    async def read(self) -> load_pb2.LoadReportResponse | None:
        """The next response, or None when the control plane ended the stream."""


Connect = Callable[[str], AsyncContextManager[ReportStream]]


class LoadReporter:
    """Streams reports to `targets` (control-plane addresses, tried in turn).

    `hello()` makes a stream's first report; `report(window_s)` the figures of the
    last `window_s` seconds (it takes the endpoints' windows). `clock` is
    monotonic seconds; `connect(target)` opens a stream."""

    def __init__(self, targets: list[str], hello: Callable[[], load_pb2.LoadReport],
                 report: Callable[[float], load_pb2.LoadReport], connect: Connect, *,
                 clock: Callable[[], float], sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 rng: random.Random | None = None, initial_backoff: float = 0.2, max_backoff: float = 30.0,
                 io_timeout: float = IO_TIMEOUT_S) -> None:
        self.targets, self.target = targets, targets[0]
        self._hello, self._report, self._connect = hello, report, connect
        self._clock, self._sleep = clock, sleep
        self._backoff = Backoff(rng or random.Random(), initial_backoff, max_backoff)
        self._io_timeout = io_timeout
        self._last_report_at = clock()
        self.interval: float | None = None  # as the control plane asked, once connected
        self.connected = False
        self.reports = 0  # reports with figures sent (observable in tests)
        self.last_error = ""
        self._task = OwnedTask("load-reporter", self._run)

    def start(self) -> None:
        self._task.start()

    async def stop(self) -> None:
        await self._task.stop()
        self.connected = False

    async def _run(self) -> None:
        while True:
            try:
                await self._stream_once()
            except (StreamBroken, TimeoutError) as e:
                self.last_error = str(e) or type(e).__name__
                log.info("load reports to %s: %s", self.target, self.last_error)
            finally:
                self.connected = False
            self.target = self.targets[(self.targets.index(self.target) + 1) % len(self.targets)]
            await self._sleep(self._backoff.failed())

    async def _stream_once(self) -> None:
        async with self._connect(self.target) as stream:
            await self._write(stream, self._hello())
            first = await self._within(stream.read())
            if first is None:
                raise StreamBroken("the control plane ended the stream before answering")
            self._set_interval(first)
            self.connected = True
            self._backoff.succeeded()
            reader = asyncio.create_task(self._read_loop(stream), name="load-report reader")
            try:
                await self._send_loop(stream, reader)
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)

    async def _send_loop(self, stream: ReportStream, reader: asyncio.Task) -> None:
        while True:
            await asyncio.wait({reader}, timeout=self.interval)
            if reader.done():
                reader.result()  # re-raises what broke the stream
                raise StreamBroken("the control plane ended the stream")
            now = self._clock()
            report = self._report(now - self._last_report_at)
            await self._write(stream, report)
            self._last_report_at = now
            self.reports += 1

    async def _read_loop(self, stream: ReportStream) -> None:
        while (response := await stream.read()) is not None:
            self._set_interval(response)

    def _set_interval(self, response: load_pb2.LoadReportResponse) -> None:
        asked = seconds(response.report_interval)
        self.interval = min(MAX_INTERVAL_S, max(MIN_INTERVAL_S, asked))

    async def _write(self, stream: ReportStream, report: load_pb2.LoadReport) -> None:
        await self._within(stream.write(report))

    async def _within(self, awaitable):
        async with asyncio.timeout(self._io_timeout):
            return await awaitable

    def __repr__(self) -> str:
        return (f"<LoadReporter target={self.target} connected={self.connected} interval={self.interval} "
                f"reports={self.reports}>")


"""The proxy's load-report stream as protocol logic over a fake stream: the
first report names the node, reports follow at the control plane's interval,
each covering the time since the previous one (a broken stream's downtime
included), and a broken stream is redialled at the next address."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from meshapi.v1 import discovery_pb2, load_pb2
from meshgrpc.config.specs import duration
from meshgrpc.proxy.load_reporter import MIN_INTERVAL_S, LoadReporter, StreamBroken


class FakeStream:
    def __init__(self, target: str, answer: bool = True, interval: float = MIN_INTERVAL_S) -> None:
        self.target = target
        self.written: list[load_pb2.LoadReport] = []
        self.responses: asyncio.Queue = asyncio.Queue()
        self.closed = False
        if answer:
            self.responses.put_nowait(load_pb2.LoadReportResponse(report_interval=duration(interval)))

    async def write(self, report: load_pb2.LoadReport) -> None:
        if self.closed:
            raise StreamBroken("closed")
        self.written.append(report)

    async def read(self):
        item = await self.responses.get()
        if isinstance(item, Exception):
            raise item
        return item

    def end(self, error: Exception | None = None) -> None:
        """The control plane ends the stream (None: cleanly)."""
        self.responses.put_nowait(error)


class FakeControlPlanes:
    """Hands out a FakeStream per connection, in order; `answer` says whether each answers."""

    def __init__(self, answers=()) -> None:
        self.streams: list[FakeStream] = []
        self._answers = list(answers)

    @contextlib.asynccontextmanager
    async def connect(self, target: str):
        stream = FakeStream(target, self._answers.pop(0) if self._answers else True)
        self.streams.append(stream)
        try:
            yield stream
        finally:
            stream.closed = True


def reporter(planes: FakeControlPlanes, windows: list[float], targets=("a:1",), io_timeout: float = 10.0) -> LoadReporter:
    node = discovery_pb2.Node(id="p1", zone="z")

    def report(window_s: float) -> load_pb2.LoadReport:
        windows.append(window_s)
        return load_pb2.LoadReport(window=duration(window_s))

    async def no_wait(seconds: float) -> None:
        await asyncio.sleep(0)

    return LoadReporter(list(targets), lambda: load_pb2.LoadReport(node=node), report, planes.connect,
                        clock=time.monotonic, sleep=no_wait, io_timeout=io_timeout)


async def _until(predicate, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def _first_report_names_the_node_then_one_report_per_interval():
    planes, windows = FakeControlPlanes(), []
    started = time.monotonic()
    r = reporter(planes, windows)
    r.start()
    try:
        await _until(lambda: len(windows) >= 3)
        stream = planes.streams[0]
        assert stream.written[0].node.id == "p1" and not stream.written[0].HasField("window")
        assert [w.window.ToNanoseconds() > 0 for w in stream.written[1:]] == [True] * (len(stream.written) - 1)
        assert r.connected and r.interval == MIN_INTERVAL_S
        # One report per interval: each waits the interval; together they cover the time since the start.
        assert all(w >= MIN_INTERVAL_S * 0.99 for w in windows[1:])
        assert sum(windows) <= time.monotonic() - started
    finally:
        await r.stop()
    assert planes.streams[0].closed and not r.connected


async def _a_broken_stream_is_redialled_at_the_next_address_and_the_gap_is_reported():
    planes, windows = FakeControlPlanes(), []
    r = reporter(planes, windows, targets=("a:1", "b:1"))
    r.start()
    try:
        await _until(lambda: len(windows) >= 1)
        planes.streams[0].end(StreamBroken("UNAVAILABLE: gone"))
        await _until(lambda: len(planes.streams) == 2 and len(planes.streams[1].written) >= 2)
        assert [s.target for s in planes.streams] == ["a:1", "b:1"]
        assert r.last_error == "UNAVAILABLE: gone"
        assert planes.streams[1].written[0].node.id == "p1"   # a new stream names the node again
        first_on_new = planes.streams[1].written[1].window.ToNanoseconds() / 1e9
        assert first_on_new >= MIN_INTERVAL_S * 0.99           # covers since the last report sent
        assert sum(windows) == pytest.approx(sum(w.window.ToNanoseconds() / 1e9 for s in planes.streams
                                                 for w in s.written[1:]), abs=1e-6)
    finally:
        await r.stop()


async def _a_control_plane_that_never_answers_is_left_for_the_next():
    planes, windows = FakeControlPlanes(answers=[False]), []
    r = reporter(planes, windows, targets=("a:1", "b:1"), io_timeout=0.2)
    r.start()
    try:
        await _until(lambda: len(windows) >= 1)
        assert [s.target for s in planes.streams] == ["a:1", "b:1"] and windows
        assert r.last_error == "TimeoutError"
    finally:
        await r.stop()


async def _an_interval_the_control_plane_asks_is_kept_within_bounds():
    planes, windows = FakeControlPlanes(), []
    r = reporter(planes, windows)
    r.start()
    try:
        await _until(lambda: r.connected)
        planes.streams[0].responses.put_nowait(load_pb2.LoadReportResponse(report_interval=duration(0.001)))
        await _until(lambda: len(windows) >= 2)
        assert r.interval == MIN_INTERVAL_S
    finally:
        await r.stop()


def test_first_report_names_the_node_then_one_report_per_interval():
    asyncio.run(asyncio.wait_for(_first_report_names_the_node_then_one_report_per_interval(), 30))


def test_a_broken_stream_is_redialled_at_the_next_address_and_the_gap_is_reported():
    asyncio.run(asyncio.wait_for(_a_broken_stream_is_redialled_at_the_next_address_and_the_gap_is_reported(), 30))


def test_a_control_plane_that_never_answers_is_left_for_the_next():
    asyncio.run(asyncio.wait_for(_a_control_plane_that_never_answers_is_left_for_the_next(), 30))


def test_an_interval_the_control_plane_asks_is_kept_within_bounds():
    asyncio.run(asyncio.wait_for(_an_interval_the_control_plane_asks_is_kept_within_bounds(), 30))

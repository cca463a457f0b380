"""The access log: one JSON line per call, sampling, and a writer that never
blocks the event loop: with its file descriptor blocked (a FIFO nobody reads)
calls keep being logged at once and the lines that do not fit are counted."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import time

from meshgrpc.admin.metrics import ProxyMetrics, ScrapeGauges
from meshgrpc.proxy.access_log import AccessLog, AccessRecord
from tests.support.procs import poll_until

STATUSES = (0, 0, 0, 14, 5)


def record(i: int) -> AccessRecord:
    return AccessRecord(time=1.7e9 + i, request_id=f"r{i}", trace_id="t" * 32, span_id="s" * 16, route="default",
                        cluster="greeter", endpoint="127.0.0.1:1", path="/helloworld.Greeter/SayHello",
                        grpc_status=STATUSES[i % len(STATUSES)], http_status=200, duration_s=0.001,
                        bytes_in=12, bytes_out=30, attempts=1)


def test_a_thousand_calls_make_a_thousand_lines_with_their_statuses(tmp_path):
    path = str(tmp_path / "access.log")
    log = AccessLog(path)
    log.start()
    for i in range(1000):
        log.log(record(i))
    assert log.stop() and (log.written, log.dropped) == (1000, 0)
    with open(path) as f:
        lines = [json.loads(line) for line in f]
    assert len(lines) == 1000
    assert collections.Counter(line["grpc_status"] for line in lines) == {0: 600, 14: 200, 5: 200}
    assert lines[7] == json.loads(record(7).line()) and lines[7]["request_id"] == "r7"


def test_sampling_keeps_about_that_share():
    log = AccessLog("/dev/null", sample=0.25, random=random.Random(1).random, capacity=100_000)
    for i in range(4000):
        log.log(record(i))
    assert 900 < len(log._buffer) < 1100
    nothing = AccessLog("/dev/null", sample=0.0)
    nothing.log(record(0))
    assert len(nothing._buffer) == 0


def _fifo_nobody_reads(tmp_path) -> tuple[str, int]:
    """A FIFO with a reader that never reads (the writer's open succeeds, then the pipe fills)."""
    path = str(tmp_path / "fifo")
    os.mkfifo(path)
    return path, os.open(path, os.O_RDONLY | os.O_NONBLOCK)


def test_a_blocked_log_never_blocks_the_loop_and_counts_what_it_drops(tmp_path):
    path, reader = _fifo_nobody_reads(tmp_path)
    log = AccessLog(path, capacity=1000)
    metrics = ProxyMetrics(lambda: ScrapeGauges({}, {}))
    metrics.watch_access_log(log)
    log.start()

    async def calls() -> float:
        """20,000 calls logged while a timer measures how late the loop runs it."""
        loop = asyncio.get_running_loop()
        lags = []

        def tick(due: float) -> None:
            lags.append(loop.time() - due)
            if len(lags) < 50:
                loop.call_later(0.01, tick, loop.time() + 0.01)
        loop.call_later(0.01, tick, loop.time() + 0.01)
        for i in range(20_000):
            log.log(record(i))
            if i % 100 == 0:
                await asyncio.sleep(0)
        while len(lags) < 50:
            await asyncio.sleep(0.01)
        return max(lags)

    try:
        started = time.monotonic()
        worst_lag = asyncio.run(calls())
        # The loop never waited on the writer: a 10 ms timer ran at most a quarter second late
        # (a generous bound for a loaded machine; a blocking write would hold it for good).
        assert worst_lag < 0.25, worst_lag
        poll_until(lambda: log.dropped > 10_000, 10, "lines dropped while the FIFO is not read")
        assert log.written < 20_000 and log.written + log.dropped + len(log._buffer) <= 20_000
        text = metrics.render().decode()
        assert f"meshgrpc_proxy_access_log_dropped_total {float(log.dropped)}" in text
        log.stop(timeout=5)     # returns: what is still buffered, or being written, is dropped
        assert time.monotonic() - started < 20
        assert log.written < 20_000 and log.written + log.dropped == 20_000  # every line accounted for
    finally:
        os.close(reader)


def test_a_fifo_with_no_reader_at_all_is_retried_and_stop_still_returns(tmp_path):
    path = str(tmp_path / "fifo")
    os.mkfifo(path)
    log = AccessLog(path, capacity=10)
    log.start()
    for i in range(50):
        log.log(record(i))
    assert log.dropped == 40
    started = time.monotonic()
    assert log.stop(timeout=5) is False and time.monotonic() - started < 5
    assert (log.written, log.dropped) == (0, 50)

"""The proxy's access log: one JSON line per call (`--access-log PATH|-`,
`--access-log-sample 0..1`), written without ever blocking the event loop.

The relay hands each finished call's `AccessRecord` to `AccessLog.log()` on the
event loop thread. That samples it (one draw when the sample is below 1) and
appends it to a bounded buffer, or counts it as dropped when the buffer is
full; nothing is encoded or written there. A writer thread, owned by the log
(`start()` / `stop()`), takes the buffer every FLUSH_INTERVAL_S, encodes the
lines and writes them. A file it opens itself is opened non-blocking, so a
FIFO nobody reads neither blocks the open (retried until a reader comes) nor
keeps the writer from noticing stop(); "-" is the process's standard output.
While the writer cannot write, the buffer fills and further lines are dropped
and counted (`dropped`, in /metrics); lines still buffered when stop() runs out
of time are counted as dropped too.
"""

from __future__ import annotations

import collections
import errno
import json
import logging
import os
import random
import select
import threading
import time
from collections.abc import Callable
from typing import NamedTuple

log = logging.getLogger(__name__)

CAPACITY = 8192            # records buffered at most (about 4 MiB of lines)
FLUSH_INTERVAL_S = 0.05    # how often the writer takes the buffer
STOP_TIMEOUT_S = 2.0       # how long stop() lets the writer drain


class AccessRecord(NamedTuple):
    """One finished call, as the relay fills it in when the call ends (the
    downstream stream is done): every field comes from the call's own state.
    A tuple, built on the event loop per call; ids and path may stay bytes there:
    `line()`, in the writer thread, turns them into text."""

    time: float               # wall-clock seconds when the request headers arrived
    request_id: str | bytes   # x-request-id as sent upstream (trace.propagate: the client's or a new one)
    trace_id: str | bytes     # the W3C trace id (trace.propagate), "" if the call never got that far
    span_id: str | bytes      # this hop's span id (trace.propagate)
    route: str                # the matched route's name (RouteEntry.name); "" when none matched
    cluster: str              # the cluster the call went to; "" when it never reached one
    endpoint: str             # address of the last attempt's endpoint; "" when no attempt started
    path: str | bytes         # the request's :path
    grpc_status: int | None   # the status sent downstream; None for plain HTTP/2
    http_status: int | None   # the :status sent downstream; None when the stream was reset first
    duration_s: float         # from the request headers to the end of the call
    bytes_in: int             # request DATA bytes received from the client
    bytes_out: int            # response DATA bytes sent to the client
    attempts: int             # upstream attempts: the first, retries and hedges (mirrors not counted)

    def line(self) -> str:
        return _ENCODE({name: _text(value) for name, value in zip(_FIELDS, self)}) + "\n"


def _text(value):
    return value.decode("utf-8", "replace") if type(value) is bytes else value


def access_record(call, route: str, cluster: str, endpoint: str, grpc_status: int | None,
                  duration_s: float) -> AccessRecord:
    """The record of a call that just ended (proxy/call.py Call; the relay has
    named its route, cluster and last endpoint already)."""
    hop = call.hop
    request_id, trace_id, span_id = (hop.request_id, hop.trace_id, hop.span_id) if hop is not None else _NO_IDS
    return AccessRecord(time.time() - duration_s, request_id, trace_id, span_id, route, cluster, endpoint, call.path,
                        grpc_status, call.http_status, duration_s, call.bytes_in, call.bytes_out, len(call.tried))


_NO_IDS = ("", "", "")
_FIELDS = AccessRecord._fields
_ENCODE = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


class AccessLog:
    """`log()` on the event loop; the writer thread does the rest (module docstring)."""

    def __init__(self, path: str, sample: float = 1.0, *, capacity: int = CAPACITY,
                 random: Callable[[], float] = random.random, flush_interval: float = FLUSH_INTERVAL_S) -> None:
        if not 0.0 <= sample <= 1.0:
            raise ValueError(f"access log sample {sample} is not between 0 and 1")
        self.path, self.sample = path, sample
        self._capacity, self._random, self._interval = capacity, random, flush_interval
        self._buffer: collections.deque[AccessRecord] = collections.deque()
        self.dropped = 0   # lines not written: the buffer was full (loop thread), or stop() ran out of time
        self.written = 0   # lines written (writer thread)
        self.write_errors = 0
        self._stop = threading.Event()
        self._deadline: float | None = None
        self._thread: threading.Thread | None = None

    def log(self, record: AccessRecord) -> None:
        """Called once per finished call, on the event loop thread. Never blocks."""
        if self.sample < 1.0 and self._random() >= self.sample:
            return
        if len(self._buffer) >= self._capacity:
            self.dropped += 1
            return
        self._buffer.append(record)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"access-log {self.path}", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> bool:
        """Lets the writer drain for up to `timeout` seconds (blocking: call it off the loop,
        e.g. asyncio.to_thread); True if every buffered line was written."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
        left = len(self._buffer)
        self.dropped += left
        self._buffer.clear()
        return left == 0 and (thread is None or not thread.is_alive())

    # -- the writer thread ------------------------------------------------------------
    def _run(self) -> None:
        fd = None
        try:
            while True:
                if fd is None:
                    fd = self._open()
                if fd is not None and self._buffer:
                    self._write_batch(fd)
                if self._stop.is_set() and (not self._buffer or self._past_deadline()):
                    return
                self._stop.wait(self._interval)
        finally:
            if fd is not None:
                os.close(fd)

    def _past_deadline(self) -> bool:
        """Once stop() was asked: whether the drain's STOP_TIMEOUT_S is over."""
        if not self._stop.is_set():
            return False
        if self._deadline is None:
            self._deadline = time.monotonic() + STOP_TIMEOUT_S
        return time.monotonic() > self._deadline

    def _open(self) -> int | None:
        if self.path == "-":
            return os.dup(1)  # blocking: a stuck stdout holds up this thread only, never the loop
        try:
            return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NONBLOCK, 0o644)
        except OSError as e:
            if e.errno != errno.ENXIO:  # ENXIO: a FIFO with no reader yet; try again next turn
                self.write_errors += 1
                log.warning("access log %s cannot be opened: %s", self.path, e)
            return None

    def _write_batch(self, fd: int) -> None:
        records = [self._buffer.popleft() for _ in range(len(self._buffer))]
        data = "".join(r.line() for r in records).encode()
        if self._write_all(fd, data):
            self.written += len(records)
        else:
            self.dropped += len(records)

    def _write_all(self, fd: int, data: bytes) -> bool:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                # The reader is not keeping up: wait for room, a bounded time per turn.
                select.select([], [fd], [], self._interval)
                if self._past_deadline():
                    return False
            except OSError as e:
                self.write_errors += 1
                log.warning("access log %s: write failed: %s", self.path, e)
                return False
        return True

    def __repr__(self) -> str:
        return (f"<AccessLog {self.path} sample={self.sample:g} buffered={len(self._buffer)} "
                f"written={self.written} dropped={self.dropped}>")

"""End-to-end flow control through a real `meshgrpc proxy`: a client that reads a
large server stream slowly holds the backend back instead of filling the proxy's
memory."""

from __future__ import annotations

import threading
import time

from meshtest.interop import messages_pb2, test_pb2_grpc
from tests.support.mesh import Mesh, mesh_config, rss_bytes, route

MIB = 1 << 20
MESSAGES = 120  # 120 MiB through the proxy in total: twice the memory bound below
BOUND = 60 * MIB


def stream_of(channel, count: int, size: int):
    request = messages_pb2.StreamingOutputCallRequest(
        response_parameters=[messages_pb2.ResponseParameters(size=size) for _ in range(count)])
    return test_pb2_grpc.TestServiceStub(channel).StreamingOutputCall(request, timeout=60)


class PeakRss:
    """Samples a process's RSS every few milliseconds on a thread; `peak` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_bytes(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss_bytes(self.pid))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


def test_a_slow_reader_keeps_the_proxy_memory_bounded(tmp_path):
    with Mesh(tmp_path) as mesh:
        backend = mesh.start_backend("a")
        mesh.start_control_plane(mesh_config({"svc": [backend]}, [route("/", "svc")]))
        proxy = mesh.start_proxy("flow-proxy")
        with proxy.channel() as channel:
            assert sum(len(r.payload.body) for r in stream_of(channel, 8, MIB)) == 8 * MIB  # warm up
            baseline = proxy.rss_bytes()
            received = 0
            with PeakRss(proxy.pid) as rss:
                stream = stream_of(channel, MESSAGES, MIB)
                for i, response in enumerate(stream):
                    received += len(response.payload.body)
                    if i == 1:
                        # Stop reading: without end-to-end flow control the backend would
                        # now push the whole stream into the proxy.
                        time.sleep(1.0)
                    elif i % 8 == 0:
                        time.sleep(0.02)
        assert received == MESSAGES * MIB
        grew = rss.peak - baseline
        assert grew < BOUND, f"proxy RSS grew by {grew / MIB:.1f} MiB while relaying {MESSAGES} MiB"

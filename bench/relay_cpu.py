"""The relay's own CPU per unary call, in memory (not a test, not part of `make bench`).

    .venv/bin/python -m bench.relay_cpu [--calls 40000] [--batch 64] [--profile]
                                        [--grpc-timeout none|fixed|fresh] [--authz none|allow]

A real Relay, DownstreamConnection and UpstreamConnection (the proxy's code, with
ProxyMetrics as observer) between an h2 client peer and an h2 "backend" peer held
in memory, no sockets. Calls go through in batches of `--batch` (64 requests in
one read, as h2load's 64 in flight arrive; then their responses in one read).
Only the time spent inside the relay's data_received is counted, as CPU time of
this thread (CLOCK_THREAD_CPUTIME_ID), so the peers' work and other processes on
a busy machine do not count. Socket writes are not included (the transports are
fakes): on loopback they add ~10-20 us per call in the real proxy.

Headers are those h2load sends and a grpc.aio server answers. `--grpc-timeout`
adds a deadline to each request: `fixed` sends the same value every call (as
`h2load -H 'grpc-timeout: 5S'`), `fresh` a new value every call (as gRPC clients
do: the time left to the call's deadline). Either way the relay then sends its
own, fresh, grpc-timeout upstream.

`--authz allow` makes it the inbound relay: each call judged by an ALLOW policy
(caller and method exact) that lets the client's SPIFFE ID in, as read at its
connection's handshake (the TLS itself is not included: it is per connection and
per byte, under the codec).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import statistics
import time

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, RequestReceived, StreamEnded
from h2.settings import SettingCodes

from meshapi.v1 import resources_pb2
from meshgrpc.config import specs
from meshgrpc.proxy.cluster import ClusterSet
from meshgrpc.proxy.listener import DownstreamConnection, Listener
from meshgrpc.proxy.relay import Relay
from meshgrpc.proxy.router import RouteTable
from meshgrpc.proxy.state import ProxyState, StateHolder
from meshgrpc.proxy.tls import Peer
from meshgrpc.proxy.upstream import UpstreamConnection, UpstreamPools

ADDR = "127.0.0.1:50051"
BODY = b"\0\0\0\0\x64" + b"x" * 100
REQUEST = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"127.0.0.1:15001"),
           (b":path", b"/echo.Echo/Unary"), (b"user-agent", b"h2load nghttp2/1.52.0"),
           (b"content-type", b"application/grpc"), (b"te", b"trailers")]
RESPONSE = [(b":status", b"200"), (b"content-type", b"application/grpc"),
            (b"grpc-accept-encoding", b"identity, deflate, gzip")]
TRAILERS = [(b"grpc-status", b"0")]
BIG = (1 << 31) - 1


class Transport:
    def __init__(self) -> None:
        self.out = []

    def write(self, data) -> None:
        self.out.append(bytes(data))

    def close(self) -> None:
        pass

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def take(self) -> bytes:
        data, self.out = b"".join(self.out), []
        return data


def _peer(client: bool) -> H2Connection:
    h2 = H2Connection(H2Configuration(client_side=client, header_encoding=None,
                                      validate_inbound_headers=False, validate_outbound_headers=False))
    h2.local_settings = type(h2.local_settings)(client=client, initial_values={
        SettingCodes.INITIAL_WINDOW_SIZE: BIG, SettingCodes.MAX_CONCURRENT_STREAMS: 10000})
    h2.initiate_connection()
    h2.increment_flow_control_window(BIG - 65535)
    return h2


def _timeouts(mode: str):
    """Per-call grpc-timeout headers the client adds (an endless iterator)."""
    if mode == "none":
        return itertools.repeat(())
    if mode == "fixed":
        return itertools.repeat(((b"grpc-timeout", b"5S"),))
    return (((b"grpc-timeout", b"%du" % (5_000_000 - i % 1_000_000)),) for i in itertools.count())


def _new_loop():
    try:
        import uvloop  # what the proxy runs on
        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


ALLOW_CLIENT = """
authorization_policies:
  - name: client-may-echo
    service: echo
    action: ALLOW
    rules: [{from: ["spiffe://mesh.local/service/client"], to: ["/echo.Echo/Unary"]}]
"""


def _authorization(mode: str):
    if mode == "none":
        return None
    from meshgrpc.config.loader import parse_text
    from meshgrpc.proxy.inbound import InboundAuthorization
    authz = InboundAuthorization("echo")
    authz.update([specs.authorization_policy_spec(p) for p in parse_text(ALLOW_CLIENT).authorization_policies])
    return authz


class Bench:
    def __init__(self, timeout: str = "none", authz: str = "none") -> None:
        self.timeouts = _timeouts(timeout)
        rc = resources_pb2.RouteConfig(name="r")
        vh = rc.virtual_hosts.add(name="all", domains=["*"])
        route = vh.routes.add(name="echo")
        route.match.prefix = "/"
        route.route.cluster = "echo"
        clusters = ClusterSet.build(
            {"echo": specs.cluster_spec(resources_pb2.Cluster(name="echo"))},
            {"echo": specs.endpoint_specs(resources_pb2.EndpointSet(
                cluster="echo", endpoints=[resources_pb2.Endpoint(address=ADDR)]))})
        try:
            from meshgrpc.admin.metrics import ProxyMetrics
            observer = ProxyMetrics(lambda: None)
        except ImportError:
            observer = None
        self.pools = UpstreamPools()
        self.relay = Relay(StateHolder(ProxyState(RouteTable.compile(specs.route_config_spec(rc)), clusters)), self.pools,
                           observer=observer, authorization=_authorization(authz))
        # Deadlines arm a timer (never run here: every call ends well before it).
        self.relay.loop = _new_loop()
        self.down = DownstreamConnection(Listener(self.relay, "127.0.0.1", 0))
        self.down_t = Transport()
        self.down.connection_made(self.down_t)
        self.down.peer = Peer("spiffe://mesh.local/service/client", "TLSv1.3", "h2")
        pool = self.pools.get(ADDR)
        self.up = UpstreamConnection(pool)
        self.up_t = Transport()
        self.up.connection_made(self.up_t)
        pool.conns.append(self.up)
        self.client, self.backend = _peer(True), _peer(False)
        self.cpu = 0
        for _ in range(3):  # settings and their ACKs
            self._to_relay(self.down, self.client.data_to_send())
            self._to_relay(self.up, self.backend.data_to_send())
            self.client.receive_data(self.down_t.take())
            self.backend.receive_data(self.up_t.take())

    def _to_relay(self, side, data: bytes) -> None:
        if data:
            t0 = time.thread_time_ns()
            side.data_received(data)
            self.cpu += time.thread_time_ns() - t0

    def batch(self, n: int) -> None:
        c = self.client
        for _ in range(n):
            sid = c.get_next_available_stream_id()
            c.send_headers(sid, REQUEST + list(next(self.timeouts)))
            c.send_data(sid, BODY, end_stream=True)
        self._to_relay(self.down, c.data_to_send())
        b = self.backend
        for ev in b.receive_data(self.up_t.take()):
            if isinstance(ev, DataReceived):
                b.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, StreamEnded):
                b.send_headers(ev.stream_id, RESPONSE)
                b.send_data(ev.stream_id, BODY)
                b.send_headers(ev.stream_id, TRAILERS, end_stream=True)
            elif isinstance(ev, RequestReceived):
                pass
        self._to_relay(self.up, b.data_to_send())
        done = 0
        for ev in c.receive_data(self.down_t.take()):
            if isinstance(ev, DataReceived):
                c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, StreamEnded):
                done += 1
        assert done == n, (done, n)


def measure(calls: int, batch: int, rounds: int, timeout: str = "none", authz: str = "none") -> list[float]:
    out = []
    for _ in range(rounds):
        b = Bench(timeout, authz)
        for _ in range(20):
            b.batch(batch)
        b.cpu = 0
        for _ in range(calls // batch):
            b.batch(batch)
        out.append(b.cpu / 1000 / (calls // batch * batch))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.relay_cpu", description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--grpc-timeout", choices=("none", "fixed", "fresh"), default="none",
                    help="grpc-timeout on requests: none, the same value, or a new value per call")
    ap.add_argument("--authz", choices=("none", "allow"), default="none",
                    help="judge each call as the inbound relay does, by one ALLOW policy (default none)")
    ap.add_argument("--profile", action="store_true", help="cProfile one round, top 30 by own time")
    ap.add_argument("--profile-filter", default="", help="with --profile: only functions whose path matches")
    a = ap.parse_args()
    if a.profile:
        import cProfile
        import pstats
        prof = cProfile.Profile()
        prof.runcall(measure, a.calls, a.batch, 1, a.grpc_timeout, a.authz)
        pstats.Stats(prof).sort_stats("tottime").print_stats(a.profile_filter or 30)
        return
    per_call = measure(a.calls, a.batch, a.rounds, a.grpc_timeout, a.authz)
    print(f"relay CPU per call (batch {a.batch}, grpc-timeout {a.grpc_timeout}, authz {a.authz}, in memory, "
          f"no syscalls): "
          f"median {statistics.median(per_call):.1f} us  rounds {[round(x, 1) for x in per_call]}"
          f"  gc {'on' if gc.isenabled() else 'off'}")


if __name__ == "__main__":
    main()

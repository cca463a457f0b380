"""A backtracking-shaped route regex through a real proxy (issue 9's attack): with
RE2 the evil path is answered in milliseconds, and a client calling on another
connection meanwhile sees no failures and no change in latency beyond noise."""

from __future__ import annotations

import statistics
import time

import grpc

from tests.support.mesh import CHANNEL_OPTIONS, Load, Mesh, interop_unary, mesh_config, route

EVIL = "/r/" + "a" * 31 + "!"   # Python's re: 2^31 steps; it held the loop 3.2 s at 26 a's


def call_path(channel: grpc.Channel, path: str) -> float:
    """One unary call to `path`; the seconds until its answer (any status)."""
    started = time.perf_counter()
    try:
        channel.unary_unary(path)(b"", timeout=5)
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.UNIMPLEMENTED, e   # the backend has no such method
    return time.perf_counter() - started


def test_an_evil_path_against_a_backtracking_shaped_regex_is_answered_fast(tmp_path):
    with Mesh(tmp_path) as mesh:
        backend = mesh.start_backend("t")
        mesh.start_control_plane(mesh_config({"test": [backend]}, [
            route("", "test", name="evil-regex", regex="/r/(a+)+"),
            route("/", "test", name="rest")]))
        proxy = mesh.start_proxy()
        with grpc.insecure_channel(proxy.address, options=CHANNEL_OPTIONS) as attacker, \
                Load(proxy.address, interop_unary, threads=2) as load:
            call_path(attacker, "/r/aaa")                 # warm the connection; matches the regex route
            load.wait_calls(100)
            quiet = time.monotonic()
            load.wait_calls(200, after=quiet)
            attack = time.monotonic()
            evil = [call_path(attacker, EVIL) for _ in range(200)]
            load.wait_calls(1, after=time.monotonic())    # a call that started after the attack ended
            done = time.monotonic()
        assert load.failures == []
        assert statistics.median(evil) < 0.010, sorted(evil)[:10]
        assert max(evil) < 1.0                            # no single request backtracked
        before, during = load.latencies(quiet, attack), load.latencies(attack, done)
        assert len(during) >= 20, len(during)
        assert statistics.median(during) < 2 * statistics.median(before) + 0.005, (before[:20], during[:20])
        assert proxy.metric("meshgrpc_proxy_calls_total", route="evil-regex") >= 1   # the regex route is live
        assert proxy.metric("meshgrpc_proxy_calls_total", route="rest") >= 200     # ...and the evil path missed it

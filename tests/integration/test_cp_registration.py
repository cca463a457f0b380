"""Registration with a real control plane, on each store (SQLite and a real
3-member etcd): instances join their cluster's endpoint set, leave when the stream
ends or heartbeats stop, bursts make one push, and stored registrations outlive a
restart for one lease TTL."""

from __future__ import annotations

import asyncio
import json
import signal

import grpc

from meshapi.v1 import management_pb2, management_pb2_grpc
from meshgrpc.config.resources import ENDPOINTS
from tests.integration.cp_support import EXAMPLE, DiscoveryProbe, cli, endpoint_addresses, start_control_plane
from tests.support.procs import credentials, meshgrpc, poll_until


def served_addresses(address: str, cluster: str = "greeter") -> set[str]:
    result = cli(address, "get", "endpoints", cluster, "-o", "json")
    assert result.returncode == 0, result.stderr
    return {e["address"] for s in json.loads(result.stdout).get("endpoints", []) for e in s["endpoints"]}


def register(address: str, instance: str, *extra: str):
    proc = meshgrpc("--log-level", "INFO", "register", "--cluster", "greeter", "--address", instance,
                    "--control-plane", address, *extra)
    proc.wait_for_line(r"registered .* in cluster 'greeter'", 10)
    return proc


def test_a_registration_joins_and_leaves_when_its_process_dies(tmp_path, backing):
    proc, address = start_control_plane(backing, "--config", EXAMPLE, "--lease-ttl", "1")
    try:
        holder = register(address, "127.0.0.1:7001", "--weight", "5", "--zone", "z")
        poll_until(lambda: "127.0.0.1:7001" in served_addresses(address), 5, "the registration is served")
        assert holder.kill() == -signal.SIGKILL
        poll_until(lambda: "127.0.0.1:7001" not in served_addresses(address), 5, "the registration left")
        assert served_addresses(address) == {"127.0.0.1:50051", "127.0.0.1:50052"}  # configured ones stay
    finally:
        proc.kill()


def test_a_silent_registration_expires_after_the_lease_ttl_and_re_registers_when_it_wakes(tmp_path, backing):
    proc, address = start_control_plane(backing, "--config", EXAMPLE, "--lease-ttl", "1")
    try:
        holder = register(address, "127.0.0.1:7002")
        poll_until(lambda: "127.0.0.1:7002" in served_addresses(address), 5, "the registration is served")
        holder.signal(signal.SIGSTOP)   # the stream stays open, the heartbeats stop
        try:
            poll_until(lambda: "127.0.0.1:7002" not in served_addresses(address), 5, "the lease expired")
            holder.signal(signal.SIGCONT)   # it wakes up, finds its lease gone and registers again
            try:
                poll_until(lambda: "127.0.0.1:7002" in served_addresses(address), 10, "it re-registered")
            except AssertionError as e:
                raise AssertionError(f"{e}\nregister output:\n{holder.output()}\ncp:\n{proc.output()}") from None
            holder.wait_for_line("registration lost", 1)
        finally:
            holder.kill()
    finally:
        proc.kill()


def test_register_stops_cleanly_on_sigterm_and_unregisters(tmp_path, backing):
    proc, address = start_control_plane(backing, "--config", EXAMPLE)
    try:
        holder = register(address, "127.0.0.1:7003")
        poll_until(lambda: "127.0.0.1:7003" in served_addresses(address), 5, "the registration is served")
        assert holder.stop() == 0
        assert "127.0.0.1:7003" not in served_addresses(address)   # gone before the process exited
    finally:
        proc.kill()


def test_registering_into_a_missing_cluster_is_refused(tmp_path, backing):
    proc, address = start_control_plane(backing, "--config", EXAMPLE)
    try:
        result = cli(address, "register", "--cluster", "nope", "--address", "127.0.0.1:7004")
        assert result.returncode == 1
        assert "FAILED_PRECONDITION" in result.stderr and "'nope'" in result.stderr
    finally:
        proc.kill()


def test_stored_registrations_survive_a_restart_for_one_fresh_ttl(tmp_path, backing):
    proc, address = start_control_plane(backing, "--config", EXAMPLE, "--lease-ttl", "1")
    holder = register(address, "127.0.0.1:7005")
    try:
        poll_until(lambda: "127.0.0.1:7005" in served_addresses(address), 5, "the registration is served")
        proc.kill()
        # The new control plane listens elsewhere, so the holder cannot renew: the
        # restored registration is served at first, then expires.
        proc, address = start_control_plane(backing, "--config", EXAMPLE, "--lease-ttl", "1")
        assert "127.0.0.1:7005" in served_addresses(address)
        poll_until(lambda: "127.0.0.1:7005" not in served_addresses(address), 5, "the restored lease expired")
    finally:
        holder.kill()
        proc.kill()


async def _register_many(address: str, count: int, probe: DiscoveryProbe) -> list:
    """Opens `count` registrations at once, waits until a push carries all of them,
    and returns the ENDPOINTS responses the probe saw by then."""
    async with credentials(address).aio_channel(address) as channel:
        stub = management_pb2_grpc.ManagementStub(channel)
        calls = [stub.Register() for _ in range(count)]
        for i, call in enumerate(calls):
            instance = management_pb2.Instance(cluster="greeter", address=f"127.0.0.2:{20000 + i}")
            await call.write(management_pb2.RegisterRequest(instance=instance))
        await asyncio.wait_for(asyncio.gather(*(call.read() for call in calls)), 10)
        for _ in range(200):   # bounded poll: 10 s
            seen = probe.responses(ENDPOINTS)
            if len(endpoint_addresses(probe.latest(ENDPOINTS), "greeter")) == count + 2:
                return seen
            await asyncio.sleep(0.05)
        raise AssertionError(f"no push carried all {count} registrations; saw {len(seen)} responses")


def test_a_hundred_registrations_inside_the_debounce_window_make_one_push(tmp_path, backing):
    proc, address = start_control_plane(backing, "--config", EXAMPLE, "--debounce", "0.5")
    try:
        with DiscoveryProbe(address, "counter", type_urls=[ENDPOINTS]) as probe:
            poll_until(lambda: probe.responses(ENDPOINTS), 10, "the initial endpoints")
            seen = asyncio.run(_register_many(address, 100, probe))
            assert len(seen) == 2 and seen[0].version_info != seen[1].version_info   # the initial set, one push
    finally:
        proc.kill()


def test_a_graceful_stop_keeps_registrations_for_the_restart(tmp_path, backing):
    proc, address = start_control_plane(backing, "--config", EXAMPLE)
    holder = register(address, "127.0.0.1:7006")
    try:
        poll_until(lambda: "127.0.0.1:7006" in served_addresses(address), 5, "the registration is served")
        assert proc.stop() == 0
        proc, address = start_control_plane(backing, "--config", EXAMPLE)
        assert "127.0.0.1:7006" in served_addresses(address)
    finally:
        holder.kill()
        proc.kill()

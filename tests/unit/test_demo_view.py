"""The demo's table and the bench's discovery-response scanner (pure functions)."""

from __future__ import annotations

from bench.xds_load import response_header
from meshapi.v1 import discovery_pb2
from meshgrpc.demo_view import CallLog, CallRecord, endpoint_rows, phase_summary


def test_response_header_reads_type_version_and_nonce_and_skips_resources():
    response = discovery_pb2.DiscoveryResponse(type_url="t", version_info="7", nonce="n-3")
    response.resources.add(type_url="x", value=b"\x01" * 300)
    data = response.SerializeToString()
    assert response_header(data) == ("t", "7", "n-3")


def test_rows_show_each_endpoints_share_of_recent_calls():
    log = CallLog(window_s=3.0)
    log.add(CallRecord(at=1.0, backend="slow", latency_s=0.1, ok=True))  # outside the window by t=10
    for i in range(30):
        log.add(CallRecord(at=10.0, backend="fast" if i % 3 else "slow", latency_s=0.001, ok=True))
    clusters = [{"name": "c", "endpoints": [{"address": "a:1", "health": "HEALTHY", "rtt_estimate_s": 0.002},
                                            {"address": "b:2", "health": "HEALTHY"}]}]
    rows = endpoint_rows(clusters, log.window(now=10.0), {"a:1": "fast", "b:2": "slow"}, 3.0)
    assert [r[2] for r in rows] == ["fast", "slow"]
    assert rows[0][3].startswith(" 66.7%") and rows[1][3].startswith(" 33.3%")
    assert rows[0][7] == "2.0" and rows[1][7] == "-"


def test_phase_summary_counts_per_cluster():
    log = CallLog()
    log.add(CallRecord(1.0, "a", 0.001, True))
    log.phase = "after"
    log.add(CallRecord(2.0, "b", 0.001, True))
    log.add(CallRecord(2.0, "", 0.001, False, "UNAVAILABLE: x"))
    lines = phase_summary(log, {"a": "one", "b": "two"})
    assert lines[0].startswith("before the canary change: 1 calls: one 100.0%")
    assert "failed 50.0%" in lines[1] and log.failures == 1 and log.last_error == "UNAVAILABLE: x"


def test_call_record_survives_its_line_and_a_partial_line_is_skipped():
    for record in (CallRecord(12.5, "greeter-1", 0.0012, True),
                   CallRecord(13.0, "", 2.0, False, "DEADLINE_EXCEEDED: late x")):
        assert CallRecord.from_line(record.to_line()) == record
    assert CallRecord.from_line("12.5 gree") is None


def test_rows_end_with_the_proxyless_clients_share_and_p50():
    clusters = [{"name": "c", "endpoints": [{"address": "a:1"}, {"address": "b:2"}]}]
    proxyless = [CallRecord(10.0, "fast", 0.002, True)] * 3 + [CallRecord(10.0, "slow", 0.004, True)]
    rows = endpoint_rows(clusters, [], {"a:1": "fast", "b:2": "slow"}, 3.0, proxyless)
    assert [r[-2:] for r in rows] == [[" 75.0%", "2.0"], [" 25.0%", "4.0"]]

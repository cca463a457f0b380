"""The benchmark's arithmetic (pure): medians and per-round ratios over rounds,
what limits the proxy's workers, and issue 11's goals met or not."""

from __future__ import annotations

import pytest

from bench import datapath, report


def one_round(direct: float, mesh: float, workers: float, mesh_cpu: float = 40.0) -> dict:
    def full(rate: float, cpu: float | None) -> dict:
        return {"calls_per_s": rate, "calls_per_s_8c": rate, "cpu_us_per_call": cpu, "cpu_us_per_call_8c": cpu,
                "p50_ms": 0.2 if cpu is None else 0.3, "p99_ms": 1.0, "grpc_p50_ms": 0.4 if cpu is None else 0.5,
                "stream_msgs_per_s": rate, "latencies_us": [200, 300],
                "backend_cores_8c": 0.5, "machine_busy_8c": 0.6}
    return {"direct": full(direct, None), "meshgrpc": full(mesh, mesh_cpu),
            "meshgrpc-2w": {"calls_per_s_8c": workers, "cpu_us_per_call_8c": 45.0,
                            "backend_cores_8c": 0.95, "machine_busy_8c": 0.7}}


def test_ratios_are_taken_per_round_then_the_median():
    # Round rates move together (a busy machine slows every path): the per-round ratio
    # stays 0.9 even though the medians of the rates alone would give 1500/1900.
    rounds = [one_round(1000, 900, 800), one_round(2000, 1800, 1600), one_round(3000, 2700, 2400)]
    got = datapath.summarise(rounds)
    assert got["meshgrpc"]["ratio"] == pytest.approx(0.9)
    assert got["meshgrpc"]["ratio_8c"] == pytest.approx(0.9) and got["meshgrpc"]["stream_ratio"] == pytest.approx(0.9)
    assert got["meshgrpc"]["grpc_added_p50_ms"] == pytest.approx(0.1)
    assert got["meshgrpc-2w"]["ratio_8c"] == pytest.approx(0.8) and "ratio" not in got["meshgrpc-2w"]
    assert "percentiles_ms" in got["meshgrpc"] and "percentiles_ms" not in got["meshgrpc-2w"]


def test_a_failed_stream_is_left_out_of_the_median_not_counted_as_zero():
    rounds = [one_round(1000, 900, 800), one_round(1000, 950, 800)]
    rounds[1]["meshgrpc"]["stream_msgs_per_s"] = None
    assert datapath.summarise(rounds)["meshgrpc"]["stream_ratio"] == pytest.approx(0.9)


def test_workers_report_scaling_and_name_the_backend_when_it_is_the_limit():
    rounds = [one_round(1000, 600, 900), one_round(1000, 600, 960)]
    got = datapath.workers(rounds, "meshgrpc-2w", 2, cpus=2)
    assert got["scaling"] == pytest.approx(1.55) and got["of_direct"] == pytest.approx(0.93)
    assert got["limit"].startswith("the backend: 2 workers pass 0.93x what the backend serves")


@pytest.mark.parametrize("of_direct, backend_cores, busy, starts", [
    (0.95, 0.2, 0.2, "the backend: 2 workers pass"),
    (0.5, 0.97, 0.5, "the backend: its one grpc.aio process used 0.97 cores"),
    (0.5, 0.6, 0.98, "the machine's cores: 98% of all 2 were busy"),
    (0.5, 0.6, 0.5, "the proxy: the backend used 0.60 cores and the machine was 50% busy"),
])
def test_the_limit_is_said_from_the_numbers(of_direct, backend_cores, busy, starts):
    assert datapath.limit(2, of_direct, backend_cores, busy, cpus=2).startswith(starts)


def test_goals_are_met_or_not_per_bound_and_unmeasured_ones_say_so():
    paths = datapath.summarise([one_round(1000, 900, 800, mesh_cpu=40.0)])
    paths["nghttpx"] = {"cpu_us_per_call": 38.0}
    rows = {row["goal"]: row for row in report.goals({"paths": paths})}
    cpu = rows["proxy CPU per call, 64 in flight, 1 connection"]
    assert cpu["met"] is True and cpu["target"] == "≤ 50 µs" and cpu["compared"] == {"nghttpx": 38.0}
    assert rows["calls/s vs direct, 64 in flight, 1 connection"]["met"] is True  # 0.90 >= 0.85
    assert rows["added p50 at 1 in flight, grpcio client"]["met"] is True  # +0.10 ms <= 0.15
    assert rows["proxy RSS with 1,000 endpoints"]["met"] is None  # the scale part did not run

    slow = datapath.summarise([one_round(1000, 800, 800, mesh_cpu=51.0)])
    rows = {row["goal"]: row for row in report.goals({"paths": slow, "proxy_memory": {
        "endpoints": 1000, "VmRSS": 31 * 1024, "VmHWM": 32 * 1024}})}
    assert rows["proxy CPU per call, 64 in flight, 8 connections"]["met"] is False
    assert rows["calls/s vs direct, 64 in flight, 8 connections"]["met"] is False  # 0.80 < 0.85
    assert rows["proxy RSS with 1,000 endpoints"]["met"] is False  # 31 MiB > 30


def test_results_md_has_a_row_per_path_each_goal_with_its_verdict_and_the_workers_limit():
    rounds = [one_round(1000, 900, 950), one_round(1000, 900, 950)]
    result = {"timestamp": "t", "json": "t.json", "skipped": {"haproxy": "haproxy is not installed"},
              "environment": {"cpus": 2, "python": "3.11", "h2load": "h2load x", "comparisons": {},
                              "load_average": (0.5, 0.4, 0.3)},
              "config": {"rounds": 2, "seconds": 5, "latency_seconds": 3, "in_flight": 64, "connections": 8,
                         "payload": 100},
              "paths": datapath.summarise(rounds), "workers": datapath.workers(rounds, "meshgrpc-2w", 2, 2),
              "checks": {"ok": True, "summary": "all good", "problems": []}}
    text = report.markdown(result, chart=None)
    assert "| meshgrpc | 900 | 0.90× | 900 | 0.90× | 40 / 40 | 0.100 | 0.100 | 900 (0.90×) | — |" in text
    assert "| meshgrpc-2w | — | — | 950 | 0.95× |" in text
    assert "| haproxy | skipped: haproxy is not installed |" in text
    assert "| proxy CPU per call, 64 in flight, 1 connection | ≤ 50 µs | 40 µs | ✅ met |" in text
    assert "| proxy RSS with 1,000 endpoints | ≤ 30 MiB | — | not measured |" in text
    assert "| bidi stream msgs/s vs direct | ≥ 0.95× | 0.90× | ❌ not met |" in text
    assert "5 of 7 goals met." in text  # not the stream, and the RSS was not measured
    assert "| 2 | 950 | 1.06× | 45 | 0.95 | 70% |" in text
    assert "The limit is the backend: 2 workers pass 0.95x what the backend serves h2load directly" in text

"""The balancing benchmark's verdict (bench/balancing.py `verdict`): issue 14's test
of a default policy applied to a run's medians."""

from __future__ import annotations

from bench.balancing import verdict


def rows(p99s: dict[tuple[str, str], float], load: float = 0.9) -> dict:
    return {(scenario, load, policy): {"p99_ms": p99} for (scenario, policy), p99 in p99s.items()}


BASE = {("homogeneous", "ROUND_ROBIN"): 100.0, ("homogeneous", "PEAK_EWMA"): 105.0,
        ("heterogeneous", "ROUND_ROBIN"): 1000.0, ("heterogeneous", "PEAK_EWMA"): 300.0,
        ("antagonist", "ROUND_ROBIN"): 800.0, ("antagonist", "PEAK_EWMA"): 250.0}


def test_a_policy_below_half_round_robin_and_below_peak_ewma_everywhere_passes():
    got = verdict(rows({**BASE, ("homogeneous", "PREQUAL"): 108.0, ("heterogeneous", "PREQUAL"): 200.0,
                        ("antagonist", "PREQUAL"): 240.0,
                        ("homogeneous", "LEAST_REQUEST"): 100.0, ("heterogeneous", "LEAST_REQUEST"): 280.0,
                        ("antagonist", "LEAST_REQUEST"): 230.0}))
    assert "- PREQUAL: heterogeneous 0.20× / 0.67×; antagonist 0.30× / 0.96×; homogeneous 1.08× ROUND_ROBIN's" \
           " — passes" in got
    assert got[-1] == "Best passing policy in this run: PREQUAL."  # the lower geometric mean of the two


def test_a_policy_over_ten_percent_worse_when_backends_are_alike_does_not_pass():
    got = verdict(rows({**BASE, ("homogeneous", "PREQUAL"): 111.0, ("heterogeneous", "PREQUAL"): 200.0,
                        ("antagonist", "PREQUAL"): 200.0,
                        ("homogeneous", "WEIGHTED_ROUND_ROBIN"): 100.0,
                        ("heterogeneous", "WEIGHTED_ROUND_ROBIN"): 310.0,  # not below PEAK_EWMA
                        ("antagonist", "WEIGHTED_ROUND_ROBIN"): 200.0}))
    assert [line.rsplit("— ", 1)[-1] for line in got if line.startswith("- ") and "PEAK_EWMA (" not in line] == \
        ["does not pass", "does not pass"]
    assert got[-1] == "No policy passes every test in this run: PEAK_EWMA stays the default."


def test_without_the_baselines_there_is_no_verdict():
    assert verdict(rows({("heterogeneous", "PREQUAL"): 1.0}))[0].startswith("No verdict")

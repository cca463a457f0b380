"""On the demo's mesh (one demo run for the module):
- the control plane's dashboard in a real headless chromium: the page loads
  with no console errors, shows the demo's four endpoints, and shows the slow
  endpoint's share of its cluster below 10% within 15 s of the page showing
  them; a screenshot is saved as a test artifact;
- `meshgrpc explain` against the demo's proxy: a call with x-canary: true takes
  the canary route and says why the default route was not chosen; a plain call
  lists the three greeter endpoints with their scores and the one the picker
  would take, the slow endpoint's estimate the highest."""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from tests.support import browser
from tests.support.procs import MESHGRPC, Proc, poll_until, run_meshgrpc

SHARE_DEADLINE_S = 15.0


# Read in one script run: the page redraws its table every second.
READ_ROWS = """return Array.from(document.querySelectorAll('#endpoints tbody tr')).map(row => [
    row.dataset.endpoint, row.dataset.cluster, Number(row.querySelector('td.share').dataset.share),
    Number(row.dataset.calls)]);"""
# The share counts only once the cluster carries traffic (the demo sends it ~90 calls/s).
MIN_CLUSTER_CALLS_PER_S = 20.0


def _rows(driver) -> dict[str, dict]:
    """The endpoint table as {address: {cluster, share, calls/s}} (the page's data attributes)."""
    return {address: {"cluster": cluster, "share": share, "calls_per_s": calls}
            for address, cluster, share, calls in driver.execute_script(READ_ROWS)}


def _slow_share(driver, slow: str) -> float | None:
    """The slow endpoint's share of its cluster's calls, once the cluster carries traffic."""
    rows = _rows(driver)
    cluster = sum(r["calls_per_s"] for r in rows.values() if r["cluster"] == rows[slow]["cluster"])
    return rows[slow]["share"] if cluster >= MIN_CLUSTER_CALLS_PER_S else None


def _four(rows: dict) -> dict | None:
    return rows if len(rows) == 4 else None


def _below(share: float | None, limit: float) -> tuple[float] | None:
    """(share,) when below `limit` (a tuple: a share of 0 is an answer too)."""
    return (share,) if share is not None and share < limit else None


class Demo:
    def __init__(self, proc: Proc) -> None:
        self.proc = proc
        self.url = proc.wait_for_line(r"^dashboard: (http://\S+)$", timeout=60).group(1)
        self.admin = proc.wait_for_line(r"\(admin http://([\d.]+:\d+)\)", timeout=60).group(1)
        self.slow = proc.wait_for_line(r"^greeter +(\S+) +greeter-3 ", timeout=60).group(1)


@pytest.fixture(scope="module")
def demo():
    # --rate 100: a lighter client than the default 200 calls/s, so the slow backend's
    # 25 ms stand out of the queueing delays of a machine shared with other work.
    proc = Proc([*MESHGRPC, "demo", "--duration", "300", "--http", "127.0.0.1:0", "--rate", "100"])
    try:
        yield Demo(proc)
    finally:
        proc.stop()


@pytest.mark.skipif(not browser.available(),
                    reason="needs Debian's chromium and chromium-driver (`make test` installs them)")
def test_dashboard_shows_the_demo_mesh_and_the_slow_endpoint_losing_traffic(demo):
    assert demo.proc.output().splitlines()[0].startswith("dashboard: "), "the dashboard's URL comes first"
    with browser.chromium() as driver:
        driver.get(demo.url)
        rows = poll_until(lambda: _four(_rows(driver)), 30, "four endpoints on the page")
        shown = time.monotonic()
        assert sorted(r["cluster"] for r in rows.values()) == ["greeter"] * 3 + ["greeter-canary"]
        assert rows[demo.slow]["cluster"] == "greeter"
        (share,) = poll_until(lambda: _below(_slow_share(driver, demo.slow), 0.10), SHARE_DEADLINE_S,
                      f"the slow endpoint {demo.slow}'s share below 10%")
        took = time.monotonic() - shown
        driver.save_screenshot(os.path.join(browser.artifacts_dir(), "dashboard.png"))
        text = driver.find_element("id", "proxies").text
        assert re.search(r"demo\b.*SYNCED", text), text   # the sidecar, its state
        assert "demo-proxyless" in text, text              # and the proxyless client
        assert browser.console_errors(driver) == []
    print(f"slow endpoint's share {share:.3f} on the page {took:.1f}s after the endpoints showed")


def _explain(demo: Demo, *args: str) -> str:
    result = run_meshgrpc("explain", "/helloworld.Greeter/SayHello", "--proxy", demo.admin, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_explain_names_the_canary_route_and_why_the_default_one_was_not_chosen(demo):
    text = _explain(demo, "-H", "x-canary: true")
    assert re.search(r"^  \* canary .* chosen$", text, re.M), text
    assert re.search(r"^    default .* matches too, but route canary comes first \(the first match wins\)$",
                     text, re.M), text
    assert re.search(r"^=> route canary -> cluster greeter-canary -> endpoint 127\.0\.0\.1:\d+$", text, re.M), text


def test_explain_lists_the_greeter_endpoints_scores_and_the_pick_the_slow_one_costliest(demo):
    def slow_is_costliest():
        data = json.loads(_explain(demo, "-o", "json"))
        greeter = next(c for c in data["clusters"] if c["cluster"] == "greeter")
        rtts = {e["address"]: e["rtt_estimate_s"] for e in greeter["endpoints"]}
        return data if max(rtts, key=rtts.get) == demo.slow else None
    data = poll_until(slow_is_costliest, 30, "the slow endpoint's estimate the highest")
    assert "no match: header x-canary: wanted exact 'true', got absent" in \
        next(r["verdict"] for r in data["routing"]["routes"] if r["route"] == "canary")
    greeter = next(c for c in data["clusters"] if c["cluster"] == "greeter")
    assert len(greeter["endpoints"]) == 3 and all(e["score"] is not None for e in greeter["endpoints"])
    assert greeter["chosen"] in {e["address"] for e in greeter["endpoints"]} and greeter["why"]
    text = _explain(demo)
    assert all(e["address"] in text for e in greeter["endpoints"]) and "<- takes" in text
    assert re.search(r"^=> route default -> cluster greeter(-canary)? -> endpoint", text, re.M), text


def test_explain_refuses_bad_input_and_says_when_the_proxy_cannot_be_reached(demo):
    refused = run_meshgrpc("explain", "helloworld.Greeter/SayHello", "--proxy", demo.admin)
    assert refused.returncode == 1 and "path must start with '/'" in refused.stderr, refused.stderr
    unreachable = run_meshgrpc("explain", "/x", "--proxy", "127.0.0.1:1")
    assert unreachable.returncode == 2 and "cannot ask the proxy at 127.0.0.1:1" in unreachable.stderr

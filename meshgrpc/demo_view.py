"""What `meshgrpc demo` shows: the client's record of recent calls, and the
per-endpoint table that joins it with the proxy's /clusters view.

Pure: time is passed in, nothing here does I/O.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CallRecord:
    at: float          # when the call ended (monotonic seconds)
    backend: str       # who answered ("" when the call failed before headers)
    latency_s: float
    ok: bool
    error: str = ""    # status and details of a failed call

    def to_line(self) -> str:
        """One line of text: how the demo's proxyless client (its own process) reports a call."""
        return f"{self.at:.6f} {self.backend or '-'} {self.latency_s:.6f} {int(self.ok)} {self.error}".rstrip()

    @classmethod
    def from_line(cls, line: str) -> "CallRecord | None":
        parts = line.split(" ", 4)
        if len(parts) < 4:
            return None  # a line still being written
        at, backend, latency, ok = parts[:4]
        return cls(float(at), "" if backend == "-" else backend, float(latency), ok == "1",
                   parts[4] if len(parts) > 4 else "")


class CallLog:
    """The client's calls: a bounded window for the live table, and totals per phase."""

    def __init__(self, window_s: float = 3.0, capacity: int = 50_000) -> None:
        self.window_s = window_s
        self._recent: deque[CallRecord] = deque(maxlen=capacity)
        self.phase = "before"
        self.totals: dict[str, Counter[str]] = {}
        self.failures = 0
        self.last_error = ""

    def add(self, record: CallRecord) -> None:
        self._recent.append(record)
        self.totals.setdefault(self.phase, Counter())[record.backend] += 1
        if not record.ok:
            self.failures += 1
            self.last_error = record.error

    def window(self, now: float) -> list[CallRecord]:
        while self._recent and self._recent[0].at < now - self.window_s:
            self._recent.popleft()
        return list(self._recent)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def _latencies(recent: list[CallRecord]) -> tuple[dict[str, list[float]], int]:
    by_backend: dict[str, list[float]] = {}
    for r in recent:
        if r.ok:
            by_backend.setdefault(r.backend, []).append(r.latency_s)
    return by_backend, sum(len(v) for v in by_backend.values()) or 1


def endpoint_rows(clusters: list[dict], recent: list[CallRecord], names: dict[str, str], window_s: float,
                  proxyless: list[CallRecord] = ()) -> list[list[str]]:
    """One row per endpoint the proxy knows: client-side share, rate, p50/p99 of the
    window, the proxy's rtt estimate, health and in-flight count, then the share
    and p50 of the proxyless client's calls (`proxyless`, the same window)."""
    by_backend, answered = _latencies(recent)
    direct, direct_answered = _latencies(list(proxyless))
    rows = []
    for cluster in clusters:
        for ep in cluster.get("endpoints", []):
            name = names.get(ep["address"], "?")
            lat = by_backend.get(name, [])
            share = len(lat) / answered
            rows.append([cluster["name"], ep["address"], name, f"{share * 100:5.1f}% {_bar(share)}",
                         f"{len(lat) / window_s:.0f}", _ms(percentile(lat, 0.5)), _ms(percentile(lat, 0.99)),
                         _ms(ep.get("rtt_estimate_s")), str(ep.get("health", "?")), str(ep.get("in_flight", "-")),
                         f"{len(direct.get(name, [])) / direct_answered * 100:5.1f}%",
                         _ms(percentile(direct.get(name, []), 0.5))])
    return rows


def _bar(share: float, width: int = 20) -> str:
    filled = round(share * width)
    return "#" * filled + "." * (width - filled)


HEADER = ["CLUSTER", "ENDPOINT", "BACKEND", "SHARE", "CALLS/S", "P50 ms", "P99 ms", "RTT EST ms", "HEALTH", "IN FLIGHT",
          "PROXYLESS", "PL P50 ms"]


def table(rows: list[list[str]]) -> str:
    rows = [HEADER] + rows
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def cluster_line(clusters: list[dict]) -> str:
    return "   ".join(f"{c['name']}: {c.get('lb_policy', '?')} ({c.get('picker', '?')})" for c in clusters)


def phase_summary(log: CallLog, cluster_of: dict[str, str], who: str = "") -> list[str]:
    """Per phase, the share of calls each cluster answered; `who` starts each line."""
    lines = []
    for phase, counts in log.totals.items():
        total = sum(counts.values()) or 1
        per_cluster = Counter()
        for backend, n in counts.items():
            per_cluster[cluster_of.get(backend, "failed")] += n
        shares = ", ".join(f"{c} {n * 100 / total:.1f}%" for c, n in sorted(per_cluster.items()))
        backends = ", ".join(f"{b or 'failed'} {n * 100 / total:.1f}%" for b, n in sorted(counts.items()))
        lines.append(f"{who}{phase} the canary change: {sum(counts.values())} calls: {shares} ({backends})")
    return lines

"""One endpoint's latest load report and its age: the state reports feed and the
balancers read. It lives in EndpointStats, so it survives config rebuilds.

`weighted_since` and `weighted_at` are gRFC A58's `non_empty_since` and
`last_updated`: when the current run of reports a weight can be computed from began
(utilization > 0 and qps > 0), and when the last such report came. A reader that
finds the weight expired ends the run (`end_run`), so a backend reporting again
goes through the blackout period again; so does a reconnect (A58: "reset when a
subchannel comes back to READY").
"""

from __future__ import annotations

from meshgrpc.proxy.orca.report import LoadReport


class EndpointLoad:
    """Updated on the event loop thread only, by the OOB subscriber, the probe
    answers and the relay's per-call reports (all through EndpointState)."""

    __slots__ = ("report", "received_at", "weighted", "weighted_since", "weighted_at", "reports")

    def __init__(self) -> None:
        self.report: LoadReport | None = None  # the latest report of any kind
        self.received_at = 0.0
        self.weighted: LoadReport | None = None  # the latest report a weight can be computed from
        self.weighted_since: float | None = None
        self.weighted_at = 0.0
        self.reports = 0

    def record(self, report: LoadReport, now: float) -> None:
        self.report, self.received_at = report, now
        self.reports += 1
        if report.utilization > 0 and report.qps > 0:
            self.weighted, self.weighted_at = report, now
            if self.weighted_since is None:
                self.weighted_since = now

    def fresh(self, now: float, max_age: float) -> LoadReport | None:
        """The latest report if it is at most `max_age` old."""
        if self.report is not None and now - self.received_at <= max_age:
            return self.report
        return None

    def end_run(self) -> None:
        self.weighted_since = None

    def describe(self, now: float) -> dict | None:
        if self.report is None:
            return None
        return {**self.report.describe(), "age_s": round(now - self.received_at, 3), "reports": self.reports}

    def __repr__(self) -> str:
        return f"<EndpointLoad {self.report!r} at={self.received_at:.3f} reports={self.reports}>"

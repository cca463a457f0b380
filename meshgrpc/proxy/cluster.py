"""The proxy's clusters: for each, its endpoints and the picker that spreads calls
over them, built from config as one immutable ClusterSet and swapped whole.

What survives a rebuild: an endpoint's stats (counters, the peak-EWMA round-trip
estimate, its active health-check result and its outlier tally: ejection and
backoff) for the same (cluster, address); the cluster's in-flight counts (its
ClusterLoad, which calls started on the old build decrement) and its retry budget
while the budget's spec is unchanged; and a whole ClusterState (picker and cursor
included) when neither its Cluster nor its EndpointSet changed. Building never
touches the previous set, so a failed build leaves it exactly as it was.

Which endpoints a cluster's picker balances over (`ClusterState.refresh`):
- eligible: weight > 0 and not DRAINING (a draining endpoint finishes its calls
  but gets no new one);
- usable: eligible, not UNHEALTHY per the control plane, passing its active
  health checks (when the cluster has health_check), and not ejected;
- then balancer/panic.py (too few usable: balance over all eligible) and
  balancer/zones.py (prefer the proxy's --zone while it is healthy enough).
Every endpoint is listed (for /clusters and the upstream pools) whatever its state.

A ClusterState's config and endpoints are fixed; its picker is the one thing it
swaps: a health change (`ClusterSet.set_health`), an ejection or un-ejection
(the call path, `ClusterSet.tick`) builds a new immutable picker for that cluster
only and replaces the reference. The ClusterSet itself is not rebuilt.
"""

from __future__ import annotations

import logging
import math
import random
import time
from typing import Callable, Iterator

from meshgrpc.config.specs import ClusterSpec, EndpointSpec, describe
from meshgrpc.proxy.balancer import Picker, PickerEnv, build_picker, panic, zones
from meshgrpc.proxy.balancer.prequal import ProbeSink
from meshgrpc.proxy.endpoint import EndpointState, EndpointStats
from meshgrpc.proxy.orca.report import LoadReport
from meshgrpc.proxy.outlier import OutlierDetector
from meshgrpc.proxy.resilience.breaker import ClusterLoad
from meshgrpc.proxy.resilience.budget import RetryBudget

log = logging.getLogger(__name__)



class ClusterState:
    """One cluster for one config: endpoints, the ones balanced over, and their
    picker. `pick()` is the per-call entry; the rest runs on config, health and
    outlier events."""

    __slots__ = ("name", "spec", "endpoint_specs", "endpoints", "usable", "candidates", "panic",
                 "local_only", "load", "budget", "_picker", "_env", "_detector", "_by_address", "_tallies",
                 "_panic_percent", "_next_sweep")

    def __init__(self, spec: ClusterSpec, endpoint_specs: tuple[EndpointSpec, ...],
                 endpoints: tuple[EndpointState, ...], env: PickerEnv,
                 detector: OutlierDetector | None = None, load: ClusterLoad | None = None,
                 budget: RetryBudget | None = None) -> None:
        self.name = spec.name
        self.spec = spec
        self.endpoint_specs = endpoint_specs
        self.endpoints = endpoints
        self.load = load or ClusterLoad(spec.name)
        self.budget = budget or RetryBudget(spec.retry_budget, env.clock)
        self._env = env
        self._detector = detector
        self._by_address = {e.address: e for e in endpoints}
        self._tallies = {e.address: e.stats.outlier for e in endpoints}
        self._panic_percent = spec.panic_threshold_percent
        self._next_sweep = env.clock() + detector.interval if detector is not None else math.inf
        for e in endpoints:
            e._owner = self
        self.usable: tuple[EndpointState, ...] = ()
        self.candidates: tuple[EndpointState, ...] = ()
        self.panic = self.local_only = False
        self._picker: Picker = build_picker(spec, (), env)
        self.refresh()

    @classmethod
    def build(cls, spec: ClusterSpec, endpoint_specs: tuple[EndpointSpec, ...],
              previous: ClusterState | None, env: PickerEnv) -> ClusterState:
        """A new state, or `previous` itself when its spec and endpoints are unchanged."""
        if (previous is not None and previous.spec == spec and previous.endpoint_specs == endpoint_specs
                and previous._env.local_zone == env.local_zone):
            return previous
        old = {e.address: e.stats for e in previous.endpoints} if previous is not None else {}
        detector = OutlierDetector.of(spec.outlier_detection) if spec.outlier_detection is not None else None
        endpoints = _endpoints(spec, endpoint_specs, old, env, detector)
        load = budget = None
        if previous is not None:
            load = previous.load
            if previous.budget.spec == spec.retry_budget:
                budget = previous.budget
        return cls(spec, endpoint_specs, endpoints, env, detector, load, budget)

    def pick(self, hash_key: bytes | None = None) -> EndpointState | None:
        """The endpoint for the next call, or None when none is usable. Never awaits."""
        return self._picker.pick(hash_key)

    def pick_avoiding(self, tried, hash_key: bytes | None = None) -> EndpointState | None:
        """A pick for another attempt of a call that already tried the endpoints in
        `tried`, oldest first (retries and hedges go elsewhere when they can, gRFC
        A6): the policy's pick if it is new; if it insists (a dead endpoint looks
        cheap to PEAK_EWMA, a key hashes to the same point), the next untried
        candidate in order; when every candidate was tried, any but the last one
        tried, so two attempts in a row never meet the same endpoint while there
        is another. Never awaits."""
        ep = self._picker.pick(hash_key)
        if ep is None or not tried or ep not in tried:
            return ep
        others = self.candidates
        start = others.index(ep) if ep in others else 0
        ring = [others[(start + k) % len(others)] for k in range(len(others))]
        fresh = next((c for c in ring if c not in tried), None)
        if fresh is not None:
            return fresh
        return next((c for c in ring if c is not tried[-1]), ep)

    def endpoint(self, address: str) -> EndpointState | None:
        return self._by_address.get(address)

    def has_untried(self, tried) -> bool:
        """Whether an endpoint balanced over is not among `tried`."""
        return any(e not in tried for e in self.candidates)

    # -- events -----------------------------------------------------------------------

    def refresh(self) -> bool:
        """Recomputes which endpoints are balanced over; builds and swaps in a new
        picker if that changed. O(n); True if the picker was replaced."""
        eligible = tuple(e for e in self.endpoints if e.eligible)
        usable = tuple(e for e in eligible if e.usable)
        chosen, in_panic = panic.candidates(eligible, usable, self._panic_percent)
        local_only = False
        if not in_panic:
            chosen, local_only = zones.prefer_local(eligible, usable, self._env.local_zone, self._panic_percent)
        self.usable, self.panic, self.local_only = usable, in_panic, local_only
        if chosen == self.candidates and self.candidates:
            return False  # same endpoints: keep the picker (and its cursor)
        self.candidates = chosen
        self._picker = build_picker(self.spec, chosen, self._env)
        return True

    def set_health(self, address: str, healthy: bool) -> bool:
        """Records an active health-check verdict; True if it changed anything."""
        endpoint = self._by_address.get(address)
        if endpoint is None or endpoint.stats.check_healthy == healthy:
            return False
        endpoint.stats.check_healthy = healthy
        log.info("cluster %s: endpoint %s is %s", self.name, address, "healthy" if healthy else "unhealthy")
        self.refresh()
        return True

    def on_consecutive_failures(self, address: str) -> None:
        """Called from the call path when an endpoint reaches the consecutive-failure
        limit: decide, apply, rebuild the picker if someone was ejected."""
        if self._detector is None:
            return
        self._act(self._detector.on_consecutive_failures(self._tallies, address, self._env.clock()))

    def tick(self, now: float | None = None) -> None:
        """Timer work (OutlierTicker): un-eject endpoints whose time is up, run the
        outlier sweep when its interval has passed, and rebuild the picker if any
        endpoint's state changed by other routes (e.g. an older ClusterState acting
        on shared stats)."""
        detector = self._detector
        now = self._env.clock() if now is None else now
        if detector is not None:
            if now >= self._next_sweep:
                self._next_sweep = now + detector.interval
                self._act(detector.sweep(self._tallies, now))
            else:
                self._act(detector.expired(self._tallies, now))
        self.refresh()

    def _act(self, decision) -> None:
        decision.apply(self._tallies)
        for e in decision.eject:
            log.warning("cluster %s: ejected %s for %.1fs (%s, ejection #%d)", self.name, e.address,
                        e.until - self._env.clock(), e.reason, e.times_ejected)
        for address in decision.uneject:
            log.info("cluster %s: %s back in rotation", self.name, address)
        if decision.changes_membership:
            self.refresh()

    # -- observing --------------------------------------------------------------------

    def describe(self) -> dict:
        now = self._env.clock()
        balancer = getattr(self._picker, "describe", None)
        return {
            "name": self.name,
            "lb_policy": self.spec.lb_policy,
            "picker": type(self._picker).__name__,
            **({"balancer": balancer()} if balancer is not None else {}),
            "usable": len(self.usable),
            "balanced_over": len(self.candidates),
            "panic": self.panic,
            "local_zone_only": self.local_only,
            "in_flight": {"requests": self.load.requests, "pending": self.load.pending,
                          "retries": self.load.retries},
            "spec": describe(self.spec),  # the effective config, defaults filled in
            "endpoints": [e.describe(now) for e in self.endpoints],
        }

    def explain(self, hash_key: bytes | None = None) -> dict:
        """Which endpoint the picker would take for a call now and why (the picker's
        own explain), with every endpoint's score inputs and, for each one not
        balanced over, why it is left out. JSON-ready; never on the call path."""
        now = self._env.clock()
        decision = self._picker.explain(hash_key)
        balanced = {id(e) for e in self.candidates}
        return {
            "cluster": self.name, "lb_policy": self.spec.lb_policy, "picker": type(self._picker).__name__,
            "panic": self.panic, "local_zone": self._env.local_zone, "local_zone_only": self.local_only,
            "chosen": decision.chosen.address if decision.chosen is not None else None, "why": decision.why,
            "score": decision.score, "drawn": list(decision.drawn),
            "endpoints": [self._explain_endpoint(e, id(e) in balanced, decision.scores.get(e.address), now)
                          for e in self.endpoints],
        }

    def _explain_endpoint(self, e: EndpointState, balanced: bool, score: float | None, now: float) -> dict:
        tally = e.stats.outlier
        view = {"address": e.address, "zone": e.zone, "weight": e.weight, "health": e.health_label(),
                "ejected_for_s": None if tally.ejected_until is None else max(0.0, tally.ejected_until - now),
                "rtt_estimate_s": e.rtt_estimate(now), "pending": e.stats.pending, "in_flight": e.stats.in_flight,
                "recent_failures": round(e.recent_failures(now), 3),
                "pushed_back_for_s": max(0.0, e.stats.pushed_back_until - now) or None,
                "balanced_over": balanced, "score": score}
        if not balanced:
            view["left_out"] = self._left_out(e, now)
        return view

    def _left_out(self, e: EndpointState, now: float) -> str:
        if e.health == "DRAINING":
            return "DRAINING: finishes its calls, gets no new ones"
        reason = e.unusable_reason(now)
        if reason is not None:
            return reason
        if self.local_only and e.zone != self._env.local_zone:
            return f"not in the proxy's zone {self._env.local_zone!r}, which is healthy enough to take the calls"
        return "not balanced over"

    def __repr__(self) -> str:
        return (f"<ClusterState {self.name!r} endpoints={len(self.endpoints)} usable={len(self.usable)}"
                f"{' panic' if self.panic else ''} picker={self._picker!r}>")


class ClusterSet:
    """Every cluster of one config, by name. Its membership is immutable once
    built (swap it whole on config change); each cluster swaps its own picker on
    health and outlier events."""

    __slots__ = ("_clusters", "_addresses")

    def __init__(self, clusters: dict[str, ClusterState]) -> None:
        self._clusters = clusters
        self._addresses = frozenset(e.address for c in clusters.values() for e in c.endpoints)

    @classmethod
    def build(cls, clusters: dict[str, ClusterSpec], endpoint_sets: dict[str, tuple[EndpointSpec, ...]],
              previous: ClusterSet | None = None, *, rng: random.Random | None = None,
              clock: Callable[[], float] = time.monotonic, local_zone: str = "",
              prober: ProbeSink | None = None) -> ClusterSet:
        """Builds from specs of (validated) config, reusing what `previous` holds
        for unchanged clusters and endpoints. `local_zone` is the proxy's --zone;
        `prober` sends PREQUAL's probes. Building never touches `previous`."""
        env = PickerEnv(rng=rng or random.Random(), clock=clock, local_zone=local_zone, prober=prober)
        prev = previous._clusters if previous is not None else {}
        return cls({
            name: ClusterState.build(spec, endpoint_sets.get(name, ()), prev.get(name), env)
            for name, spec in clusters.items()
        })

    def get(self, name: str) -> ClusterState | None:
        return self._clusters.get(name)

    def addresses(self) -> frozenset[str]:
        """Every endpoint address of every cluster, usable or not (for the upstream pools)."""
        return self._addresses

    def set_health(self, cluster: str, address: str, healthy: bool) -> bool:
        """The health checker's callback target: True if it changed anything."""
        state = self._clusters.get(cluster)
        return state is not None and state.set_health(address, healthy)

    def record_load(self, cluster: str, address: str, report: LoadReport) -> bool:
        """An out-of-band load report from `address` of `cluster`; False if no such endpoint."""
        state = self._clusters.get(cluster)
        endpoint = state.endpoint(address) if state is not None else None
        if endpoint is None:
            return False
        endpoint.on_load_report(report)
        return True

    def tick(self, now: float | None = None) -> None:
        """Outlier timers of every cluster (drive with outlier.OutlierTicker)."""
        for state in self._clusters.values():
            state.tick(now)

    def __iter__(self) -> Iterator[ClusterState]:
        return iter(self._clusters.values())

    def __len__(self) -> int:
        return len(self._clusters)

    def describe(self) -> dict:
        """Plain data for the admin /clusters endpoint."""
        return {"clusters": [c.describe() for c in self._clusters.values()]}

    snapshot = describe

    def __repr__(self) -> str:
        inner = ", ".join(f"{c.name}:{len(c.usable)}/{len(c.endpoints)}" for c in self._clusters.values())
        return f"<ClusterSet [{inner}]>"


def _endpoints(spec: ClusterSpec, endpoint_specs: tuple[EndpointSpec, ...], old: dict[str, EndpointStats],
               env: PickerEnv, detector: OutlierDetector | None) -> tuple[EndpointState, ...]:
    now = env.clock()
    checked = spec.health_check is not None
    ewma = spec.peak_ewma
    return tuple(
        EndpointState(spec.name, e, old.get(e.address) or EndpointStats(ewma.default_rtt, now), clock=env.clock,
                      decay=ewma.decay, detector=detector, checked=checked, failure_penalty=spec.failure_penalty)
        for e in endpoint_specs)

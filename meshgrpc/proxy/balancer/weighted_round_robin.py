"""WEIGHTED_ROUND_ROBIN: round robin weighted by what backends report (gRFC A58).

Every `weight_update_period` the picker reads each endpoint's latest load report
(EndpointStats.load: OOB stream, probe or per-call trailer; proxy/orca/) and
rebuilds its schedule:
- weight = qps / (utilization + eps / qps x error_utilization_penalty), from the
  latest report with utilization > 0 and qps > 0 (A58's formula; utilization is
  application_utilization when set, else cpu_utilization);
- a weight counts only once its endpoint has reported for `blackout_period`, and
  only while it was refreshed within `weight_expiration_period` (A58's GetWeight:
  an expired weight also restarts the blackout, endpoint_load.py);
- an endpoint without a weight gets the mean of the weighted ones; with fewer than
  two weighted endpoints every endpoint weighs the same, which is round robin (A58).
Reported weights replace the endpoints' config weights.

The schedule is round_robin.py's earliest-deadline-first heap, over the weights
scaled to integers (the largest to RESOLUTION), started at a random point: smooth
interleaving, O(log n) per pick. A58 swaps schedules from a timer; here the first
pick due rebuilds (O(n), once per period) and the picker keeps the schedule when
the weights have not changed, so a cluster whose backends report nothing costs a
round robin. An endpoint the server pushed back is passed over while others are
not (pushed_back.py).

Concurrency: pick() never awaits and runs on the event loop thread only; the
schedule and the update time are the picker's private state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshgrpc.config.specs import ClusterSpec, WeightedRoundRobinSpec
from meshgrpc.proxy.balancer.explanation import PickExplanation
from meshgrpc.proxy.balancer.pushed_back import first_available
from meshgrpc.proxy.balancer.round_robin import EdfPicker
from meshgrpc.proxy.balancer.single import SinglePicker

if TYPE_CHECKING:
    from meshgrpc.proxy.balancer import PickerEnv
    from meshgrpc.proxy.endpoint import EndpointState
    from meshgrpc.proxy.orca.endpoint_load import EndpointLoad

RESOLUTION = 10_000  # the largest weight's integer share in the schedule


def build(cluster: ClusterSpec, endpoints: tuple[EndpointState, ...], env: PickerEnv):
    if len(endpoints) == 1:
        return SinglePicker(endpoints[0])
    return WeightedRoundRobinPicker(endpoints, cluster.weighted_round_robin, env)


def reported_weight(load: EndpointLoad, now: float, spec: WeightedRoundRobinSpec) -> float:
    """The endpoint's weight at `now` (0: none usable): gRFC A58's GetWeight."""
    report = load.weighted
    if report is None:
        return 0.0
    if now - load.weighted_at >= spec.weight_expiration_period:
        load.end_run()
        return 0.0
    since = load.weighted_since
    if spec.blackout_period > 0 and (since is None or now - since < spec.blackout_period):
        return 0.0
    utilization = report.utilization + report.eps / report.qps * spec.error_utilization_penalty
    return report.qps / utilization


def filled(weights: list[float]) -> list[float]:
    """Zero weights replaced by the mean of the others; all equal (1.0) when fewer
    than two are positive."""
    known = [w for w in weights if w > 0]
    if len(known) < 2:
        return [1.0] * len(weights)
    mean = sum(known) / len(known)
    return [w if w > 0 else mean for w in weights]


def scaled(weights: list[float]) -> tuple[int, ...]:
    top = max(weights)
    return tuple(max(1, round(w / top * RESOLUTION)) for w in weights)


class WeightedRoundRobinPicker:
    __slots__ = ("_endpoints", "_spec", "_rng", "_clock", "_schedule", "_scaled", "_weights", "_next_update")

    def __init__(self, endpoints: tuple[EndpointState, ...], spec: WeightedRoundRobinSpec, env: PickerEnv) -> None:
        self._endpoints = endpoints
        self._spec = spec
        self._rng = env.rng
        self._clock = env.clock
        self._scaled: tuple[int, ...] = ()
        self._weights: list[float] = []
        self._schedule: EdfPicker | None = None
        self._next_update = 0.0
        self.update(self._clock())

    def pick(self, hash_key: bytes | None = None) -> EndpointState:
        now = self._clock()
        if now >= self._next_update:
            self.update(now)
        ep = self._schedule.pick()
        if ep.stats.pushed_back_until > now:
            return first_available(self._endpoints, self._endpoints.index(ep), now)
        return ep

    def update(self, now: float) -> None:
        """Recomputes the weights; a new schedule only if they changed."""
        weights = filled([reported_weight(e.stats.load, now, self._spec) for e in self._endpoints])
        self._weights = weights
        self._next_update = now + self._spec.weight_update_period
        integers = scaled(weights)
        if integers != self._scaled:
            self._scaled = integers
            self._schedule = EdfPicker(self._endpoints, skip=self._rng.randrange(len(self._endpoints)),
                                       weights=integers)

    def weights(self) -> dict[str, float]:
        """The weight each endpoint has in the current schedule."""
        return {e.address: w for e, w in zip(self._endpoints, self._weights)}

    def explain(self, hash_key: bytes | None = None) -> PickExplanation:
        """The endpoint the current schedule gives next (passed over while pushed back)."""
        now = self._clock()
        chosen = self._schedule.explain().chosen
        if chosen.stats.pushed_back_until > now:
            chosen = first_available(self._endpoints, self._endpoints.index(chosen), now)
        weights = self.weights()
        share = weights[chosen.address] / sum(self._weights)
        return PickExplanation(chosen, f"{chosen.address} is next in the weighted round-robin schedule, whose "
                               f"weights come from load reports ({share:.0%} of calls go to it)", weights,
                               "weight = qps / (utilization + eps / qps x error_utilization_penalty); "
                               "the mean for an endpoint without a usable report")

    def describe(self) -> dict:
        return {"weights": self.weights(), "next_update_in_s": max(0.0, self._next_update - self._clock())}

    def __repr__(self) -> str:
        return f"<WeightedRoundRobinPicker endpoints={len(self._endpoints)} weights={self._weights!r}>"

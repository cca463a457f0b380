"""PREQUAL: probing to reduce queuing and latency (Wydrowski, Kleinberg, Rumble and
Archer, "Load is not what you should balance: Introducing Prequal", NSDI 2024).

Per call, the picker
1. sends `probes_per_call` asynchronous probes on average (the paper's r_probe,
   3) to endpoints drawn at random, distinct within the call, through the proxy's
   prober (orca/probes.py), at most `max_probes_per_second` per proxy and
   cluster (a token bucket: the cost bound; calls over it send none). Answers come
   back to `on_probe` later and join the pool (probe_pool.py), each with the
   paper's reuse budget b = 1 + δ / ((1 - m/n) r_probe - r_remove), δ = 1, m the
   pool size, n the endpoints, r_remove = r_probe / 3 (the paper's one removal per
   query at its three probes; proportional, so a capped probe rate cannot drain
   the pool faster than it fills), capped by `max_reuse` (and `max_reuse` when the
   denominator is not positive: probes cannot keep up);
2. chooses from the pool by the hot-cold rule (hot above the `hot_rif_quantile`,
   the paper's q_rif = 0.84), skipping answers older than `max_probe_age`, of
   endpoints pushed back by their server, or with a recent failure (one that
   fails fast would report a short latency: the paper drops a failing replica's
   probes the same way);
3. with fewer than two answers pooled, falls back to PEAK_EWMA's choice, with its
   failure penalty and pushback: the proxy's own view of pending calls and rtt.
When the cluster also has `out_of_band_load_reports`, a probe of an endpoint whose
latest report is younger than 1.5 stream intervals is answered from that report at
once, without an RPC (ORCA's OOB stream as the probe's carrier, gRFC A51), aged from
when the report came and pooled once (pooling it again would undo the calls counted
against the answer since, and herd every call onto a stale "idle"): probing
then costs one stream per endpoint at its interval, whatever the call rate, instead
of probes_per_call RPCs per call. Either way the pool, its age and reuse bounds and
the hot-cold rule are the same.
An endpoint that does not answer probes (UNIMPLEMENTED, or an answer without the
`rif` metric) is pooled with the proxy's own view of it instead: its calls
pending here as rif and its rtt estimate as latency. So a cluster whose backends
do not cooperate is balanced on what this proxy sees, as PEAK_EWMA does.

Concurrency: pick() never awaits and runs on the event loop thread only; probing
hands endpoints to the prober (a deque append); answers arrive on the same thread.
The pool, the probe credit and the token bucket are the picker's private state; a
new picker (config or membership change) starts with an empty pool.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Protocol

from meshgrpc.config.specs import ClusterSpec, PrequalSpec
from meshgrpc.proxy import penalty
from meshgrpc.proxy.balancer.explanation import PickExplanation
from meshgrpc.proxy.balancer.peak_ewma import PeakEwmaPicker
from meshgrpc.proxy.balancer.probe_pool import Answer, ProbePool
from meshgrpc.proxy.balancer.single import SinglePicker
from meshgrpc.proxy.ewma import current

if TYPE_CHECKING:
    from meshgrpc.proxy.balancer import PickerEnv
    from meshgrpc.proxy.endpoint import EndpointState
    from meshgrpc.proxy.orca.report import LoadReport

REUSE_DELTA = 1.0  # the paper's δ in the reuse budget
REMOVALS_PER_PROBE = 1.0 / 3.0  # the paper's r_remove = 1 per query at r_probe = 3


class ProbeSink(Protocol):
    """Where a picker sends its probes (orca/probes.py's Prober). `probe`
    never awaits: it queues the probe and returns True, or returns False when the
    endpoint does not answer probes (the picker then uses its own view). An answer,
    later, is `reply_to.on_probe(index, report)`; a probe that fails or times out
    (after `reply_to.probe_timeout` seconds) gets no answer."""

    def probe(self, endpoint: EndpointState, reply_to, index: int) -> bool: ...


class NoProbes:
    """The sink of a proxy without a prober: every endpoint is seen by the proxy only."""

    def probe(self, endpoint: EndpointState, reply_to, index: int) -> bool:
        return False


def build(cluster: ClusterSpec, endpoints: tuple[EndpointState, ...], env: PickerEnv):
    if len(endpoints) == 1:
        return SinglePicker(endpoints[0])
    return PrequalPicker(endpoints, cluster, env)


def reuse_budget(spec: PrequalSpec, endpoints: int) -> float:
    """The paper's b_reuse for this pool and cluster size, within [1, max_reuse]."""
    denominator = (1.0 - spec.pool_size / endpoints) * spec.probes_per_call \
        - spec.probes_per_call * REMOVALS_PER_PROBE
    if denominator <= 0.0:
        return float(spec.max_reuse)
    return min(float(spec.max_reuse), max(1.0, 1.0 + REUSE_DELTA / denominator))


class ProbeCounts:
    """What probing cost and how picks were made, since this picker was built."""

    __slots__ = ("picks", "pooled", "fallback", "probes", "capped", "local", "streamed")

    def __init__(self) -> None:
        self.picks = self.pooled = self.fallback = 0  # picks; by the pool; by PEAK_EWMA
        self.probes = self.capped = self.local = 0  # probes made; not made (rate cap); own-view answers
        self.streamed = 0  # probes answered from the out-of-band stream's latest report (no RPC)

    def describe(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}


class PrequalPicker:
    __slots__ = ("_endpoints", "_stats", "_n", "_spec", "_pool", "_fallback", "_sink", "_random", "_clock",
                 "_owed", "_tokens", "_tokens_at", "_rate", "_burst", "_budget", "_max_age", "_rtt_decay",
                 "_penalty_decay", "_streamed_age", "_streamed_at", "probe_timeout", "counts")

    def __init__(self, endpoints: tuple[EndpointState, ...], cluster: ClusterSpec, env: PickerEnv) -> None:
        spec = cluster.prequal
        self._endpoints = endpoints
        self._stats = tuple(e.stats for e in endpoints)
        self._n = len(endpoints)
        self._spec = spec
        self._pool = ProbePool(min(spec.pool_size, self._n), spec.hot_rif_quantile)
        self._fallback = PeakEwmaPicker(endpoints, cluster.peak_ewma.decay, env.rng.random, env.clock,
                                        cluster.failure_penalty)
        self._sink: ProbeSink = env.prober if env.prober is not None else NoProbes()
        self._random = env.rng.random
        self._clock = env.clock
        self._owed = 0.0  # probes due, fractional
        self._rate = float(spec.max_probes_per_second)
        self._burst = max(spec.probes_per_call, self._rate / 10.0)  # a tenth of a second's probes
        self._tokens, self._tokens_at = self._burst, self._clock()
        self._budget = reuse_budget(spec, self._n)
        self._max_age = spec.max_probe_age
        self._rtt_decay = cluster.peak_ewma.decay
        self._penalty_decay = cluster.failure_penalty.decay
        oob = cluster.out_of_band_load_reports
        self._streamed_age = 1.5 * oob.interval if oob is not None else None
        self._streamed_at = [0.0] * self._n  # when each endpoint's last pooled streamed report came
        self.probe_timeout = spec.max_probe_age  # an answer older than that is useless
        self.counts = ProbeCounts()

    # -- the call path ------------------------------------------------------------------

    def pick(self, hash_key: bytes | None = None) -> EndpointState:
        now = self._clock()
        counts = self.counts
        counts.picks += 1
        self._send_probes(now)
        answer = self._pool.take(now, self._max_age, self._usable)
        if answer is not None:
            counts.pooled += 1
            return self._endpoints[answer.index]
        counts.fallback += 1
        return self._fallback.pick()

    def _usable(self, i: int, now: float) -> bool:
        s = self._stats[i]
        if s.pushed_back_until > now:
            return False
        return not s.penalty or penalty.current(s.penalty, s.penalty_at, now, self._penalty_decay) < 1.0

    def _send_probes(self, now: float) -> None:
        owed = self._owed + self._spec.probes_per_call
        n = int(owed)
        self._owed = owed - n
        if n == 0:
            return
        tokens = min(self._burst, self._tokens + (now - self._tokens_at) * self._rate)
        self._tokens_at = now
        if tokens < n:
            self.counts.capped += n - int(tokens)
            n = int(tokens)
        self._tokens = tokens - n
        if n == 0:
            return
        self._pool.owe_removals(n * REMOVALS_PER_PROBE)
        answered = []
        for i in self._targets(min(n, self._n)):
            self.counts.probes += 1
            if self._streamed_age is not None:
                load = self._stats[i].load
                report = load.fresh(now, self._streamed_age)
                if report is not None and report.rif is not None:
                    if load.received_at > self._streamed_at[i]:  # a report pooled once is not pooled again
                        self._streamed_at[i] = load.received_at
                        self.counts.streamed += 1
                        answered.append(self._answer(i, report, load.received_at))
                    continue
            if not self._sink.probe(self._endpoints[i], self, i):
                self.counts.local += 1
                answered.append(self._own_view(i, now))
        if answered:
            self._pool.add_all(answered, now, self._max_age)

    def _targets(self, n: int) -> list[int]:
        """`n` distinct endpoint positions drawn at random."""
        chosen: list[int] = []
        while len(chosen) < n:
            i = int(self._random() * self._n)
            if i not in chosen:
                chosen.append(i)
        return chosen

    # -- answers ------------------------------------------------------------------------

    def on_probe(self, index: int, report: LoadReport | None) -> None:
        """A probe of endpoint `index` answered (`report`), or told that it does not
        report requests in flight (None): pool the answer, or the proxy's own view."""
        now = self._clock()
        if report is None or report.rif is None:
            self.counts.local += 1
            answer = self._own_view(index, now)
        else:
            answer = self._answer(index, report, now)
        self._pool.add(answer, now, self._max_age)

    def _answer(self, index: int, report: LoadReport, at: float) -> Answer:
        latency = report.latency_s if report.latency_s is not None else self._rtt(index, at)
        return Answer(index, report.rif, latency, at, self._uses())

    def _own_view(self, index: int, now: float) -> Answer:
        return Answer(index, float(self._stats[index].pending), self._rtt(index, now), now, self._uses())

    def _rtt(self, index: int, now: float) -> float:
        s = self._stats[index]
        return current(s.rtt, s.rtt_at, now, self._rtt_decay)

    def _uses(self) -> int:
        """The reuse budget, rounded at random to an integer with the same mean."""
        whole = int(self._budget)
        return whole + (self._random() < self._budget - whole)

    # -- observing ------------------------------------------------------------------------

    def pooled(self, now: float | None = None) -> list[dict]:
        """The pooled answers (the candidates of the next pick), best first, with their keys."""
        now = self._clock() if now is None else now
        pool = self._pool
        rows = [{"address": self._endpoints[a.index].address, "rif": a.rif, "latency_s": a.latency,
                 "hot": a.rif > pool.threshold, "age_s": now - a.at, "uses_left": a.uses,
                 "usable": self._usable(a.index, now) and now - a.at <= self._max_age}
                for a in pool.answers()]
        return sorted(rows, key=lambda r: (not r["usable"], r["hot"], r["rif"] if r["hot"] else r["latency_s"]))

    def explain(self, hash_key: bytes | None = None) -> PickExplanation:
        """The pooled answer the next call would take by the hot-cold rule, or, with
        fewer than two usable answers pooled, PEAK_EWMA's choice. Sends no probe."""
        rows = self.pooled()
        usable = [r for r in rows if r["usable"]]
        if len(rows) < 2 or not usable:
            fallback = self._fallback.explain(hash_key)
            return dataclasses.replace(fallback, why="fewer than two usable probe answers pooled: " + fallback.why)
        best = usable[0]
        chosen = next(e for e in self._endpoints if e.address == best["address"])
        rule = (f"all pooled answers are hot (requests in flight above {self._pool.threshold:g}), so the fewest "
                f"in flight: {best['rif']:g}" if best["hot"] else
                f"the lowest latency among cold answers: {best['latency_s'] * 1e3:.3g} ms, {best['rif']:g} in flight")
        return PickExplanation(chosen, f"{chosen.address}: {rule} (PREQUAL's hot-cold rule over {len(rows)} "
                               "pooled probe answers)", {r["address"]: r["latency_s"] for r in rows},
                               "the probe answer's latency, seconds; a cold answer's lowest wins")

    def describe(self) -> dict:
        prober_counts = getattr(self._sink, "counts", None)
        return {"pool": self.pooled(), "hot_rif_above": self._pool.threshold, "reuse_budget": self._budget,
                "picks": self.counts.describe(),
                "probes": prober_counts(self._endpoints[0].cluster) if prober_counts is not None else None}

    def __repr__(self) -> str:
        return f"<PrequalPicker endpoints={self._n} {self._pool!r}>"

"""Peak-EWMA round-trip estimates: pure maths, time passed in.

The estimate of an endpoint is a pair (value, at): seconds, and the time of the
last sample. It follows linkerd2-proxy / tower's PeakEwma (and Finagle's), which
is "quick to react to latency spikes, recovering only cautiously":

- `observe`: a sample above the estimate replaces it (the peak); a sample below
  pulls the estimate towards it with weight 1 - exp(-dt / decay), dt being the
  time since the previous sample, so the estimate forgets at the same rate in
  wall time whether an endpoint takes ten calls a second or a thousand.
- `current`: between samples the estimate is read as value * exp(-dt / decay),
  that is, time without samples counts as fast answers. That is what brings an
  endpoint back after it was slow: no calls go to it, its estimate decays until
  it is cheaper than its busy peers, it gets a call, and the call's sample says
  whether it recovered. (tower decays towards zero the same way, on every read.)
  For an endpoint in use the gap between samples is milliseconds against a
  decay of seconds, so the read-time decay is negligible there.

A new endpoint starts at the configured default_rtt (30 ms by default).
"""

from __future__ import annotations

import math


def current(value: float, at: float, now: float, decay: float) -> float:
    """The estimate at `now`, decayed towards zero since the last sample at `at`."""
    elapsed = now - at
    if elapsed <= 0.0:
        return value
    return value * math.exp(-elapsed / decay)


def observe(value: float, at: float, sample: float, now: float, decay: float) -> float:
    """The estimate after a sample of `sample` seconds taken at `now`."""
    if sample >= value:
        return sample  # peak: jump straight up
    elapsed = now - at
    if elapsed <= 0.0:
        return value  # same instant: no time has passed to move the average
    w = math.exp(-elapsed / decay)
    return value * w + sample * (1.0 - w)


def failed(value: float, at: float, sample: float, now: float, decay: float) -> tuple[float, float]:
    """(value, at) after a call that failed without any response. Such a call is no
    evidence that the endpoint is fast (a refused connection fails in
    microseconds), so it may only raise the estimate, as a peak, and it does not
    stop the idle decay when it does not."""
    if sample > current(value, at, now, decay):
        return sample, now
    return value, at

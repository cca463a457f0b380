"""Retry delays: exponential growth from `base` to `cap`, with jitter so that many
clients failing together do not retry together (AWS architecture blog,
"Exponential Backoff And Jitter"). One policy for every reconnect loop in meshgrpc.
"""

from __future__ import annotations

import random


class Backoff:
    """`failed()` returns the next delay in seconds; `succeeded()` starts over.

    jitter is the fraction of each delay that is random: 1.0 is "full jitter"
    (uniform in [0, d]); 0.2 keeps every delay within 80-100% of d.
    """

    __slots__ = ("rng", "base", "cap", "jitter", "attempt")

    def __init__(self, rng: random.Random, base: float = 0.1, cap: float = 5.0, jitter: float = 1.0) -> None:
        self.rng, self.base, self.cap, self.jitter = rng, base, cap, jitter
        self.attempt = 0

    def failed(self) -> float:
        delay = min(self.cap, self.base * 2 ** min(self.attempt, 32))
        self.attempt += 1
        return delay * (1.0 - self.jitter * self.rng.random())

    def succeeded(self) -> None:
        self.attempt = 0

    def __repr__(self) -> str:
        return f"Backoff(attempt={self.attempt}, base={self.base}, cap={self.cap}, jitter={self.jitter})"

"""Resilience policies, each a pure decision with time and randomness passed in:
retry budgets (budget.py), circuit breakers (breaker.py), retry decisions with
back-off and server pushback (retry.py), hedging (hedge.py), local rate limits
(rate_limit.py), fault injection (fault.py) and mirroring (mirror.py). The relay (call.py) asks them
and acts on the answer; none of them does I/O or awaits."""

"""Resilience policies, each a pure decision with time and randomness passed in:
retry budgets (budget.py), circuit breakers (breaker.py), retry and hedge
decisions with back-off and server pushback (retry.py), local rate limits
(rate_limit.py) and fault injection (fault.py). The relay (call.py) asks them
and acts on the answer; none of them does I/O or awaits."""

"""PREQUAL's pool of probe answers (Wydrowski et al., "Load is not what you should
balance: Introducing Prequal", NSDI 2024, §4): pure, time passed in.

The pool holds at most `size` answers, one per endpoint (the newest). An answer is
an endpoint's requests in flight (rif) and latency as its backend reported them (or
as the proxy sees it, for a backend that does not answer probes), when it arrived,
and how many more calls it may route (its reuse budget).

Selection is the paper's hot-cold lexicographic rule: an answer whose rif is above
the pool's `hot_quantile` of rif (linear interpolation between the sorted values)
is hot; the cold answer with the lowest latency wins; when every answer is hot, the
one with the fewest in flight. Using an answer adds one to its rif (the call just
sent there) and spends one use; an answer with none left leaves the pool.

What a pick costs: each answer carries a precomputed key (its latency when cold,
HOT + rif when hot), and the best answer is `keys.index(min(keys))`, a C loop over
at most `size` floats. The quantile and the keys are recomputed when an answer
arrives or leaves, or when a pick turns the answer it used hot (its counted call
moves the quantile; against a stale threshold, the answers used would all turn hot
and leave the slowest one the only cold choice); otherwise a pick re-keys only the
answer it used. The paper removes answers per query, alternately the oldest and the
worst; here picks owe those removals and the next arrival makes them, before it
joins (and only from a full pool: they make room), so a pick stays O(1) in Python.
"""

from __future__ import annotations

from collections.abc import Callable

HOT = 1e9  # added to the key of a hot answer: every cold one (latency in seconds) sorts first


class Answer:
    __slots__ = ("index", "rif", "latency", "at", "uses")

    def __init__(self, index: int, rif: float, latency: float, at: float, uses: int) -> None:
        self.index = index  # the endpoint's position in the picker's endpoints
        self.rif = rif
        self.latency = latency
        self.at = at
        self.uses = uses

    def __repr__(self) -> str:
        return f"<Answer #{self.index} rif={self.rif:g} latency={self.latency * 1e3:.2f}ms uses={self.uses}>"


def quantile(values: list[float], q: float) -> float:
    """The q-quantile of `values` (non-empty), interpolating between sorted neighbours."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    if low + 1 >= len(ordered):
        return ordered[-1]
    return ordered[low] + (ordered[low + 1] - ordered[low]) * (position - low)


class ProbePool:
    __slots__ = ("size", "hot_quantile", "_answers", "_keys", "threshold", "_owed", "_oldest_next")

    def __init__(self, size: int, hot_quantile: float) -> None:
        self.size = size
        self.hot_quantile = hot_quantile
        self._answers: list[Answer] = []
        self._keys: list[float] = []
        self.threshold = 0.0  # rif above this is hot
        self._owed = 0.0  # removals picks asked for, made on the next arrival
        self._oldest_next = True

    def __len__(self) -> int:
        return len(self._answers)

    def answers(self) -> list[Answer]:
        return list(self._answers)

    # -- arrivals -----------------------------------------------------------------------

    def add(self, answer: Answer, now: float, max_age: float) -> None:
        self.add_all((answer,), now, max_age)

    def add_all(self, answers: tuple[Answer, ...] | list[Answer], now: float, max_age: float) -> None:
        """Pools `answers` (each replacing its endpoint's older one), after dropping
        answers older than `max_age` and making the removals owed; the oldest goes
        when full. One re-keying for all of them."""
        fresh = {a.index for a in answers}
        self._answers = [a for a in self._answers if now - a.at <= max_age and a.index not in fresh]
        self._pay_removals()
        for answer in answers:
            if len(self._answers) >= self.size:
                self._answers.remove(min(self._answers, key=_age_key))
            self._answers.append(answer)
        self._rekey()

    def owe_removals(self, n: float) -> None:
        self._owed += n

    def _pay_removals(self) -> None:
        """Removals make room for fresh answers: a pool that has room keeps what it
        has (in a cluster of a few endpoints the pool is never fuller than they are)."""
        while self._owed >= 1.0 and len(self._answers) >= self.size:
            self._owed -= 1.0
            victim = min(self._answers, key=_age_key) if self._oldest_next else self._worst()
            self._answers.remove(victim)
            self._oldest_next = not self._oldest_next
        if len(self._answers) < self.size:
            self._owed = 0.0  # room enough: do not carry a debt into the next arrivals

    def _worst(self) -> Answer:
        self._rekey()
        keys = self._keys
        return self._answers[keys.index(max(keys))]

    def _rekey(self) -> None:
        answers = self._answers
        threshold = self.threshold = quantile([a.rif for a in answers], self.hot_quantile) if answers else 0.0
        self._keys = [a.latency if a.rif <= threshold else HOT + a.rif for a in answers]  # _key, inlined

    def _key(self, a: Answer) -> float:
        return a.latency if a.rif <= self.threshold else HOT + a.rif

    # -- picks ----------------------------------------------------------------------------

    def best(self, now: float, max_age: float) -> Answer | None:
        """The answer the hot-cold rule chooses among those at most `max_age` old
        (older ones met on the way leave the pool), or None when none is left."""
        keys = self._keys
        while keys:
            position = keys.index(min(keys))
            answer = self._answers[position]
            if now - answer.at <= max_age:
                return answer
            self._drop_at(position)
        return None

    def take(self, now: float, max_age: float, usable: Callable[[int, float], bool]) -> Answer | None:
        """best() and use() in one pass, for a pick: the answer the hot-cold rule
        chooses, used once; answers older than `max_age`, or fresh but whose endpoint
        is not `usable(index, now)`, leave the pool on the way. None when fewer than
        two fresh answers are pooled (the pick falls back). best()'s loop is written
        out here, not called: this runs once per call."""
        answers, keys = self._answers, self._keys
        while answers:
            position = keys.index(min(keys))
            answer = answers[position]
            if now - answer.at <= max_age:
                if len(answers) < 2:
                    return None
                if usable(answer.index, now):
                    self._use_at(position, answer)
                    return answer
            del answers[position]
            del keys[position]
        return None

    def use(self, answer: Answer) -> None:
        self._use_at(self._answers.index(answer), answer)

    def _use_at(self, position: int, answer: Answer) -> None:
        """One call goes to `answer`'s endpoint: one more in flight there, one use less.
        An answer that turns hot, or leaves, changes the quantile: the pool is re-keyed
        (O(size log size), a few times per reuse budget); otherwise only its key moves."""
        was_cold = answer.rif <= self.threshold
        answer.rif += 1.0
        answer.uses -= 1
        if answer.uses <= 0:
            self._drop_at(position)
            self._rekey()
        elif was_cold and answer.rif > self.threshold:
            self._rekey()
        else:
            self._keys[position] = self._key(answer)

    def _drop_at(self, position: int) -> None:
        del self._answers[position]
        del self._keys[position]

    def __repr__(self) -> str:
        return f"<ProbePool {len(self._answers)}/{self.size} hot>{self.threshold:g} owed={self._owed:.2f}>"


def _age_key(a: Answer) -> float:
    return a.at

import random

from meshgrpc.backoff import Backoff


def test_delays_double_up_to_the_cap_within_their_jitter():
    backoff = Backoff(random.Random(1), base=0.1, cap=1.0, jitter=0.2)
    delays = [backoff.failed() for _ in range(8)]
    for attempt, delay in enumerate(delays):
        ceiling = min(1.0, 0.1 * 2 ** attempt)
        assert 0.8 * ceiling <= delay <= ceiling, (attempt, delay)


def test_full_jitter_spreads_delays_over_the_whole_range():
    backoff = Backoff(random.Random(2), base=1.0, cap=1.0, jitter=1.0)
    delays = [backoff.failed() for _ in range(1000)]
    assert min(delays) < 0.05 and max(delays) > 0.95


def test_success_starts_over():
    backoff = Backoff(random.Random(3), base=0.1, cap=5.0, jitter=0.0)
    assert [backoff.failed() for _ in range(3)] == [0.1, 0.2, 0.4]
    backoff.succeeded()
    assert backoff.failed() == 0.1

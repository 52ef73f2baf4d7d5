import random

from bot.pipeline.backoff import Backoff
from tests.unit.fakes import Sleeps


def test_delays_grow_exponentially_up_to_the_cap():
    backoff = Backoff(base=0.5, cap=10.0, rng=lambda: 1.0)
    assert [backoff.next_delay() for _ in range(8)] == [0.5, 1, 2, 4, 8, 10, 10, 10]


def test_the_lowest_delay_is_half_the_step():
    backoff = Backoff(base=1.0, cap=8.0, rng=lambda: 0.0)
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1, 2, 4, 4, 4]


def test_jitter_stays_between_half_and_the_whole_step():
    rng = random.Random(1234)
    backoff = Backoff(base=0.5, cap=30.0, rng=rng.random)
    delays = []
    for failures in range(12):
        step = min(30.0, 0.5 * 2 ** failures)
        delay = backoff.next_delay()
        assert step / 2 <= delay <= step
        delays.append(delay)
    assert len(set(delays)) == len(delays)  # jittered, not fixed


def test_reset_starts_over():
    backoff = Backoff(base=0.5, cap=30.0, rng=lambda: 1.0)
    for _ in range(5):
        backoff.next_delay()
    assert backoff.failures == 5
    backoff.reset()
    assert backoff.failures == 0
    assert backoff.next_delay() == 0.5


async def test_wait_sleeps_the_delay_it_returns():
    sleeps = Sleeps()
    backoff = Backoff(base=2.0, cap=30.0, rng=lambda: 0.5, sleep=sleeps)
    assert await backoff.wait() == 1.5
    assert await backoff.wait() == 3.0
    assert sleeps.calls == [1.5, 3.0]


def test_a_long_outage_stays_at_the_cap():
    backoff = Backoff(base=0.5, cap=30.0, rng=lambda: 1.0)
    backoff.failures = 1100  # about 9 hours of failures at the 30 s cap
    assert backoff.next_delay() == 30.0

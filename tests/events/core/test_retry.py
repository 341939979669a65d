"""One backoff, and the retry policy and the relay's waits derived from it (no broker, no database)."""

import pytest

from events.core.retry import Backoff, RetryPolicy
from events.relay.loop import RELAY_BACKOFF


def test_backoff_grows_exponentially_up_to_its_cap():
    policy = RetryPolicy(max_attempts=6, initial_backoff=0.5, multiplier=2.0, max_backoff=3.0)
    assert [policy.backoff(attempt) for attempt in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.total_backoff() == 9.5


def test_a_policy_needs_at_least_one_attempt():
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_a_counter_walks_the_waits_of_consecutive_failures_and_starts_again_after_a_reset():
    counter = Backoff(initial=0.5, multiplier=2.0, limit=3.0).counter()
    assert counter.peek() == 0.5
    assert [counter.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert counter.peek() == 3.0
    counter.reset()
    assert counter.next() == 0.5


def test_the_retry_policy_and_the_relay_wait_by_the_one_backoff():
    policy = RetryPolicy(max_attempts=4, initial_backoff=0.5, multiplier=2.0, max_backoff=30.0)
    relay = RELAY_BACKOFF.counter()
    assert [relay.next() for _ in range(8)] == [policy.backoff(n) for n in range(1, 9)] == [
        0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0
    ]

"""The relay's metrics."""

import functools

import pytest
from prometheus_client import CollectorRegistry

from events.relay.metrics import RoundLatency


def test_the_latency_histogram_counts_each_acknowledged_row_in_its_bucket_a_round_at_a_time():
    registry = CollectorRegistry()
    latency = RoundLatency("relay_test_latency_seconds", "test", (0.1, 1, 10), registry=registry)
    latency.observe_round(100.0, [99.95, 99.5, 99.0, 95.0, 80.0])  # 0.05, 0.5, 1, 5 and 20 s
    latency.observe_round(200.0, [199.99])
    value = functools.partial(registry.get_sample_value, "relay_test_latency_seconds_bucket")
    assert [value({"le": le}) for le in ("0.1", "1.0", "10.0", "+Inf")] == [2, 4, 5, 6]
    assert registry.get_sample_value("relay_test_latency_seconds_count") == 6
    assert registry.get_sample_value("relay_test_latency_seconds_sum") == pytest.approx(26.56)

"""The relay's Prometheus metrics (in the default registry; their names are the operators' interface)."""

import threading
from bisect import bisect_left

from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import HistogramMetricFamily

EVENTS_RELAYED = Counter("outbox_events_relayed_total", "Outbox events acknowledged by Kafka.", ["topic"])
RELAY_LAG = Gauge("outbox_relay_lag_seconds", "Age of the oldest unsent outbox row at the last relay round.")
RELAY_IS_LEADER = Gauge("outbox_relay_leader", "1 while this process is the active (leader) relay.")
EVENTS_PARKED = Counter("outbox_events_parked_total", "Outbox rows parked because Kafka refused them.", ["topic"])
ROWS_PARKED = Gauge(
    "outbox_rows_parked", "Outbox rows parked (waiting for retry_parked), counted when the relay last caught up."
)


class RoundLatency:
    """A Prometheus histogram of the time from writing an outbox row to Kafka acknowledging it, fed
    the rows acknowledged together at once: their bucket counts come from one sort and a bisection
    per bucket. ``Histogram.observe`` per row (a lock and a bucket search each) was 8% of the relay's
    thread under a backlog (py-spy)."""

    def __init__(self, name, documentation, bounds, registry=REGISTRY):
        self.name, self.documentation = name, documentation
        self.bounds = tuple(bounds)
        self._counts = [0] * len(self.bounds)  # per bound: latencies at most that long (cumulative)
        self._count = 0
        self._sum = 0.0
        self._lock = threading.Lock()  # observe_round (the relay) against collect (a scrape)
        registry.register(self)

    def observe_round(self, answered_at, created_ats):
        """Count the latencies of rows written at ``created_ats`` (seconds since the epoch) and
        acknowledged at ``answered_at``."""
        created = sorted(created_ats)
        # A latency of at most ``bound`` is a row written at or after answered_at - bound.
        within = [len(created) - bisect_left(created, answered_at - bound) for bound in self.bounds]
        total = len(created) * answered_at - sum(created)
        with self._lock:
            self._counts = [count + more for count, more in zip(self._counts, within)]
            self._count += len(created)
            self._sum += total

    def collect(self):
        with self._lock:
            buckets = [(repr(float(bound)), count) for bound, count in zip(self.bounds, self._counts)]
            buckets.append(("+Inf", self._count))
            total = self._sum
        yield HistogramMetricFamily(self.name, self.documentation, buckets=buckets, sum_value=total)


RELAY_LATENCY = RoundLatency(
    "outbox_relay_latency_seconds",
    "Time from writing an outbox row to Kafka acknowledging it.",
    (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

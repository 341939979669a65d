"""The consumer's Prometheus metrics that do not depend on the transport (names unchanged since
they lived in events/consumer.py)."""

from prometheus_client import Counter

from events.core.outcomes import DUPLICATE

PROCESSED = Counter("todo_consumer_processed", "Events whose handler ran and committed.", ["consumer"])
SKIPPED = Counter(
    "todo_consumer_skipped",
    "Messages acknowledged without running the handler (duplicate, unknown_type, not_subscribed).",
    ["consumer", "reason"],
)
RETRIED = Counter("todo_consumer_retried", "Handler runs repeated after a failure.", ["consumer"])
DEAD_LETTERED = Counter(
    "todo_consumer_dead_lettered", "Messages written to the dead-letter topic (invalid, failed).", ["consumer", "reason"]
)


def count_handled(consumer, outcome, events=1):
    """Count ``events`` events the handler took (``processed``) or that were processed before (``duplicate``)."""
    if outcome == DUPLICATE:
        SKIPPED.labels(consumer, "duplicate").inc(events)
    else:
        PROCESSED.labels(consumer).inc(events)

"""Step 5 of processing: the stop ratio, the consumer's circuit breaker.

If the handler failed nearly every recent event (``CONSUMER_DLQ_STOP_RATIO`` of the last
``CONSUMER_DLQ_STOP_WINDOW`` events it ran on), the consumer stops with DeadLetterRateExceeded:
after a bad deploy it is better to stop than to dead-letter the world. Invalid and forged messages
and skipped ones are not counted: they are the sender's fault, and counting them would let anyone
who can write to the topic stop the service.
"""

from collections import deque


class DeadLetterRateExceeded(RuntimeError):
    """Nearly every recent message was dead-lettered: the consumer stops instead of going on."""


class StopRatio:
    """The handler's verdicts on the latest ``window`` events it ran on; trips above ``ratio`` failed."""

    def __init__(self, *, ratio, window, name, dead_letter_topic):
        self.ratio, self.name, self.dead_letter_topic = ratio, name, dead_letter_topic
        self._recent_failures = deque(maxlen=window)  # True for a failure

    def note(self, failed):
        """Count one verdict of the handler; raise DeadLetterRateExceeded when it failed nearly every recent event."""
        window = self._recent_failures
        window.append(failed)
        if not failed:
            return
        failures = sum(window)
        if len(window) == window.maxlen and failures > self.ratio * window.maxlen:
            raise DeadLetterRateExceeded(
                f"consumer {self.name}: the handler failed {failures} of the last {len(window)} events "
                f"(limit {self.ratio:.0%}); stopping rather than dead-lettering everything. "
                f"Look at {self.dead_letter_topic} for the cause (a bad deploy? a missing dependency?), "
                "fix it, restart, and replay the letters with replay_dlq."
            )

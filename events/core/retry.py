"""One backoff, and the retry policy of consumers built on it.

``Backoff`` is the one definition of an exponential wait in the system: the consumer runtime's
retries (``RetryPolicy``), the outbox relay's waits for the database and the broker
(``Backoff.counter``) and the e-mail sender's retries (notifications.mail) all derive from it.
"""

from dataclasses import dataclass, field

from django.conf import settings


@dataclass(frozen=True)
class Backoff:
    """Waits growing by ``multiplier`` from ``initial`` seconds, each capped at ``limit``."""

    initial: float = 0.5
    multiplier: float = 2.0
    limit: float = 30.0

    def delay(self, failure):
        """Seconds to wait after the ``failure``-th consecutive failure (1-based)."""
        return min(self.initial * self.multiplier ** (failure - 1), self.limit)

    def counter(self):
        """A BackoffCounter over these waits, for a loop that counts its own consecutive failures."""
        return BackoffCounter(self)


@dataclass
class BackoffCounter:
    """The waits of a Backoff for a run of consecutive failures: ``next()`` after each failure,
    ``reset()`` after a success."""

    backoff: Backoff
    failures: int = field(default=0)

    def peek(self):
        """The wait that ``next()`` will return."""
        return self.backoff.delay(self.failures + 1)

    def next(self):
        self.failures += 1
        return self.backoff.delay(self.failures)

    def reset(self):
        self.failures = 0


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a failing handler is re-run before its event is dead-lettered.

    ``max_attempts`` counts every run of the handler, the first included: 3 means one try and
    two retries, waiting ``initial_backoff``, then ``initial_backoff * multiplier`` seconds
    (each wait capped at ``max_backoff``).
    """

    max_attempts: int = 5
    initial_backoff: float = 0.5
    multiplier: float = 2.0
    max_backoff: float = 30.0

    def __post_init__(self):
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    @classmethod
    def from_settings(cls):
        return cls(
            max_attempts=settings.CONSUMER_RETRY_MAX_ATTEMPTS,
            initial_backoff=settings.CONSUMER_RETRY_INITIAL_BACKOFF,
            multiplier=settings.CONSUMER_RETRY_MULTIPLIER,
            max_backoff=settings.CONSUMER_RETRY_MAX_BACKOFF,
        )

    @property
    def waits(self):
        return Backoff(self.initial_backoff, self.multiplier, self.max_backoff)

    def backoff(self, failed_attempt):
        """Seconds to wait after the ``failed_attempt``-th run (1-based) failed."""
        return self.waits.delay(failed_attempt)

    def total_backoff(self):
        return sum(self.backoff(attempt) for attempt in range(1, self.max_attempts))

"""Rate limits: the counters, their 429, and the cap on reminders a user's task writes schedule.

Each limit is a django-ratelimit counter ("<requests>/<window>" from settings) in the Redis cache
``RATELIMIT_USE_CACHE``, so every web process counts together. A request beyond a limit gets
``too_many_requests``: 429 with ``Retry-After``, the seconds until the counter's window ends.
The task services count reminders here (``count_scheduled_reminder``); the sign-in and
registration doors are counted with the same counters by tasks/accounts/doors.py, whose
middleware also answers a ``RateLimited`` raised by any view.

When the counters cannot be counted (Redis unreachable or timing out) the limiter fails closed
but honestly: ``CountersUnavailable``, a 503 with ``Retry-After`` from the same builder, logged;
never a 500, and never an uncounted guess let through.
"""

import logging

from django.conf import settings
from django.http import JsonResponse
from django_ratelimit.core import get_usage
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# How soon a client may try again when the counters could not be counted: a Redis restart's worth.
COUNTERS_RETRY_AFTER_SECONDS = 5


class RateLimited(Exception):
    """Raised (by the middleware's checks or a service) when a counter is past its limit."""

    status = 429

    def __init__(self, what, retry_after):
        self.retry_after = retry_after
        super().__init__(f"Too many {what}: try again in {retry_after} seconds.")


class CountersUnavailable(RateLimited):
    """The counters' cache could not count this request: refused, as a 503 rather than a 429,
    since nobody went past a limit. A RateLimited, so whatever handles one handles this too."""

    status = 503

    def __init__(self, retry_after=COUNTERS_RETRY_AFTER_SECONDS):
        self.retry_after = retry_after
        Exception.__init__(self, f"The rate limiter is unavailable: try again in {retry_after} seconds.")


def too_many_requests(limited):
    """The one 429 (or, for CountersUnavailable, 503) response of the project, for a RateLimited."""
    response = JsonResponse({"detail": str(limited)}, status=limited.status)
    response["Retry-After"] = str(limited.retry_after)
    return response


def count(group, value, rate, *, what="requests"):
    """Count one request of ``value`` (an address, a username, a user id) against ``rate``.

    Raises RateLimited, saying ``what`` was too many, when this request is beyond the limit of
    the current window, and CountersUnavailable when the cache could not count it.
    """
    try:
        usage = get_usage(None, group=group, key=lambda _group, _request: value, rate=rate, increment=True)
    except RedisError as error:
        logger.error("rate limiter: the counters' cache is unreachable (%r); %s refused with 503", error, group)
        raise CountersUnavailable() from None
    if usage["should_limit"]:
        if usage["time_left"] < 0:  # django-ratelimit's "the cache could not count" (fail closed)
            logger.error("rate limiter: the counters' cache did not count; %s refused with 503", group)
            raise CountersUnavailable()
        raise RateLimited(what, max(1, usage["time_left"]))


def count_scheduled_reminder(user_id):
    """Count a reminder the user's write is about to schedule; RateLimited beyond the hourly cap."""
    count(
        "reminders",
        str(user_id),
        f"{settings.REMINDERS_PER_USER_PER_HOUR}/h",
        what=f"reminders scheduled (at most {settings.REMINDERS_PER_USER_PER_HOUR} an hour)",
    )

"""Rate limits: the sign-in and registration doors, and reminders scheduled per user.

Each limit is a django-ratelimit counter ("<requests>/<window>" from settings) in the Redis cache
``RATELIMIT_USE_CACHE``, so every web process counts together. A request beyond a limit gets
``too_many_requests``: 429 with ``Retry-After``, the seconds until the counter's window ends.

The doors are checked by ``RateLimitMiddleware`` before the view runs, so a refused guess costs
no password hash (PBKDF2 is deliberately slow: unthrottled, it is a CPU denial of service too).
Every attempt counts, right or wrong: the limiter must not need the hash to decide. Sign-in is
counted per client address (``REMOTE_ADDR``: uvicorn sets it from ``X-Forwarded-For`` for trusted
proxies only) and per username, so neither many names from one address nor one name from many
addresses gets far.

When the counters cannot be counted (Redis unreachable or timing out) the limiter fails closed
but honestly: ``CountersUnavailable``, a 503 with ``Retry-After`` from the same builder, logged;
never a 500, and never an uncounted guess let through.
"""

import json
import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.http import JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.urls import Resolver404, resolve
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


def client_address(request):
    return request.META.get("REMOTE_ADDR") or "unknown"


def posted_identity(request, field="username"):
    """The ``field`` of a posted body (JSON or form), case-folded, or None when there is none to read."""
    try:
        if request.content_type == "application/json":
            data = json.loads(request.body)
        else:
            request.body  # read (and kept) first, so that the view can still parse a multipart body
            data = request.POST
    except (ValueError, RecursionError, SuspiciousOperation, MultiPartParserError):
        return None  # the view answers the malformed body; the address counter still counted it
    value = data.get(field) if isinstance(data, dict) else None
    return value.casefold() if isinstance(value, str) and value else None


@dataclass(frozen=True)
class Door:
    """A POST route counted per client address and, when ``username_rate_setting`` is set, per
    the posted ``identity_field`` (the username of a sign-in, the address of a password reset)."""

    group: str
    what: str
    address_rate_setting: str
    username_rate_setting: str | None = None
    identity_field: str = "username"

    def check(self, request):
        rate = getattr(settings, self.address_rate_setting)
        count(f"{self.group}:address", client_address(request), rate, what=self.what)
        if self.username_rate_setting and (identity := posted_identity(request, self.identity_field)):
            rate = getattr(settings, self.username_rate_setting)
            count(f"{self.group}:{self.identity_field}", identity, rate, what=self.what)


SIGN_IN = Door("sign-in", "sign-in attempts", "SIGN_IN_RATE_PER_ADDRESS", "SIGN_IN_RATE_PER_USERNAME")
# The old password is a guess too (with a stolen token): it is counted with sign-in, per address.
PASSWORD_CHANGE = Door("sign-in", "sign-in attempts", "SIGN_IN_RATE_PER_ADDRESS")
REGISTER = Door("register", "registrations", "REGISTER_RATE_PER_ADDRESS")
# A reset request mails whoever owns the address: counted per address asking and per e-mail address
# asked for, so that nobody can fill someone's inbox (or their hourly e-mail cap) with reset links.
PASSWORD_RESET = Door(
    "password-reset", "password reset requests", "PASSWORD_RESET_RATE_PER_ADDRESS", "PASSWORD_RESET_RATE_PER_EMAIL", "email"
)

# URL name -> its door. The sign-in doors share their counters: one budget of guesses per address
# and per username, whichever door they knock on.
DOORS = {
    "auth-token": SIGN_IN,
    "login": SIGN_IN,
    "admin:login": SIGN_IN,
    "auth-password": PASSWORD_CHANGE,
    "settings-password": PASSWORD_CHANGE,
    "settings-email": PASSWORD_CHANGE,  # needs the current password too
    "auth-register": REGISTER,
    "password_reset": PASSWORD_RESET,
}


def door_of(request):
    if request.method != "POST":
        return None
    try:
        return DOORS.get(resolve(request.path_info).view_name)
    except Resolver404:
        return None


class RateLimitMiddleware:
    """Counts the POSTs of ``DOORS``; answers ``RateLimited`` from any view with the 429."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        door = door_of(request)
        if door is not None:
            try:
                door.check(request)
            except RateLimited as limited:
                return too_many_requests(limited)
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, RateLimited):
            return too_many_requests(exception)
        return None


def count_scheduled_reminder(user_id):
    """Count a reminder the user's write is about to schedule; RateLimited beyond the hourly cap."""
    count(
        "reminders",
        str(user_id),
        f"{settings.REMINDERS_PER_USER_PER_HOUR}/h",
        what=f"reminders scheduled (at most {settings.REMINDERS_PER_USER_PER_HOUR} an hour)",
    )

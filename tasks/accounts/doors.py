"""The rate-limited doors: sign-in, registration, password change and password reset.

The doors are checked by ``RateLimitMiddleware`` before the view runs, so a refused guess costs
no password hash (PBKDF2 is deliberately slow: unthrottled, it is a CPU denial of service too).
Every attempt counts, right or wrong: the limiter must not need the hash to decide. Sign-in is
counted per client address (``REMOTE_ADDR``: uvicorn sets it from ``X-Forwarded-For`` for trusted
proxies only) and per username, so neither many names from one address nor one name from many
addresses gets far. The counters and their 429 (or 503 when Redis cannot count) are tasks.ratelimit's.
"""

import json
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.http.multipartparser import MultiPartParserError
from django.urls import Resolver404, resolve

from tasks.ratelimit import RateLimited, count, too_many_requests


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

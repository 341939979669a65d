"""Correlation ids: every request carries one, from X-Request-ID or freshly made, and echoes it."""

import re
import uuid

HEADER = "X-Request-ID"
# A caller's id is used as given when it is a sane token; anything else is replaced.
ACCEPTABLE = re.compile(r"^[A-Za-z0-9._:/+=@-]{1,200}$")


class CorrelationIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get(HEADER, "")
        request.correlation_id = incoming if ACCEPTABLE.match(incoming) else str(uuid.uuid4())
        response = self.get_response(request)
        response[HEADER] = request.correlation_id
        return response

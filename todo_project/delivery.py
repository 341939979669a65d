"""The Dapr delivery application: what the delivery pods serve to their sidecar, and nothing else.

With EVENT_TRANSPORT=dapr, Dapr delivers each consumer's events over HTTP to
``/dapr/events/<consumer>`` (events/views.py). Those routes write into users' accounts, so they are
not part of the web application (todo_project/urls.py never mounts them): this separate ASGI
application serves them on the delivery pods only (``uvicorn todo_project.delivery_asgi:application``),
next to the probes:

    GET  /dapr/subscribe, GET /dapr/config, POST /dapr/events/<consumer> (DAPR_CONSUMERS of them)
    GET  /healthz, /readyz, /metrics

It refuses to start without EVENT_TRANSPORT=dapr and DAPR_APP_API_TOKEN, and answers 401 to any
/dapr/ request whose ``dapr-api-token`` header is not that token (the sidecar sends it on every
call when the pod's annotation ``dapr.io/app-token-secret`` names the same Secret) before Django,
and so any handler, sees the request.
"""

import hmac
import json

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.asgi import ASGIHandler

from todo_project.body_limit import RequestBodyLimit

DAPR_PREFIX = "/dapr/"
TOKEN_HEADER = b"dapr-api-token"
URLCONF = "todo_project.delivery_urls"


def check_configuration():
    """Raise ImproperlyConfigured, saying what to set, unless this process may serve Dapr deliveries."""
    if settings.EVENT_TRANSPORT != "dapr":
        raise ImproperlyConfigured(
            f"the Dapr delivery application needs EVENT_TRANSPORT=dapr (it is {settings.EVENT_TRANSPORT!r}); "
            "with the kafka transport run the consumers with `manage.py run_consumer <name>` instead"
        )
    if not settings.DAPR_APP_API_TOKEN:
        raise ImproperlyConfigured(
            "DAPR_APP_API_TOKEN is empty: set it (or Dapr's APP_API_TOKEN) to the token the sidecar sends in "
            "dapr-api-token (the Secret of the pod's dapr.io/app-token-secret annotation); without it anyone "
            "who reaches this port could deliver events into any account"
        )


class DeliveryHandler(ASGIHandler):
    """Django's ASGI handler, resolving against the delivery routes instead of the web app's."""

    async def get_response_async(self, request):
        request.urlconf = URLCONF
        return await super().get_response_async(request)


def carries_token(scope, token):
    presented = next((value for name, value in scope.get("headers", []) if name.lower() == TOKEN_HEADER), b"")
    return hmac.compare_digest(presented, token)


async def refuse(send, status, body):
    payload = json.dumps(body).encode()
    await send({
        "type": "http.response.start", "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
    })
    await send({"type": "http.response.body", "body": payload})


def delivery_application():
    """The ASGI application, once the configuration allows it (see check_configuration)."""
    check_configuration()
    token = settings.DAPR_APP_API_TOKEN.encode()
    django_application = DeliveryHandler()

    async def application(scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith(DAPR_PREFIX) and not carries_token(scope, token):
            await refuse(send, 401, {"error": "missing or wrong dapr-api-token"})
            return
        await django_application(scope, receive, send)

    # A delivery's body is one event (at most Kafka's message size): anything over the request limit
    # is refused before it is read, as on the web application.
    return RequestBodyLimit(application, settings.MAX_REQUEST_BODY_BYTES)

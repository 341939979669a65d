"""ASGI entry point: HTTP (API, admin, web app) and WebSocket on one port."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "todo_project.settings")
# Django must be set up before anything imports models (the websocket routes do).
django_http = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from tasks.auth import WebSocketAuthMiddleware  # noqa: E402
from todo_project.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_http,
        # Session cookie (same-origin only) or an `Authorization: Token` header, see tasks/auth.py.
        "websocket": AuthMiddlewareStack(WebSocketAuthMiddleware(URLRouter(websocket_urlpatterns))),
    }
)

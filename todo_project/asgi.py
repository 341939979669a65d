"""ASGI entry point: HTTP (API, admin, web app), WebSocket and the MCP server on one port."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "todo_project.settings")
# Django must be set up before anything imports models (the websocket routes do).
django.setup(set_prefix=False)

from todo_project.handler import OneHopASGIHandler  # noqa: E402

# Django's requests, each in one thread hop (todo_project/handler.py).
django_http = OneHopASGIHandler()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from tasks.accounts.auth import WebSocketAuthMiddleware  # noqa: E402
from tasks.chat.mcp_server import mcp_http_app, mcp_lifespan  # noqa: E402
from todo_project.body_limit import RequestBodyLimit  # noqa: E402
from todo_project.routing import websocket_urlpatterns  # noqa: E402

MCP_PATHS = ("/mcp", "/mcp/")

router = ProtocolTypeRouter(
    {
        "http": django_http,
        # Session cookie (same-origin only) or an `Authorization: Token` header, see tasks/accounts/auth.py.
        "websocket": AuthMiddlewareStack(WebSocketAuthMiddleware(URLRouter(websocket_urlpatterns))),
    }
)


async def lifespan(receive, send):
    """ASGI lifespan (uvicorn sends it; Channels' router does not route it): runs the MCP session manager."""
    message = await receive()
    assert message["type"] == "lifespan.startup"
    try:
        async with mcp_lifespan():
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
            assert message["type"] == "lifespan.shutdown"
    except Exception as error:
        await send({"type": "lifespan.startup.failed", "message": str(error)})
        raise
    await send({"type": "lifespan.shutdown.complete"})


async def routes(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
    elif scope["type"] == "http" and scope["path"] in MCP_PATHS:
        await mcp_http_app(scope, receive, send)
    else:
        await router(scope, receive, send)


# Request bodies over the limit are a 413 whatever the route (CONTRACT.md section 7).
application = RequestBodyLimit(routes, settings.MAX_REQUEST_BODY_BYTES)

"""WebSocket authentication: the browser's session cookie or a DRF ``Authorization: Token``.

Channels' AuthMiddlewareStack (outside this middleware) puts the session's user in the scope.
This middleware then
- lets a valid ``Authorization: Token <key>`` header decide the user (mobile apps, scripts,
  the benchmark use the API token they use for REST), and
- trusts a session only when the handshake's ``Origin`` is one of our hosts: browsers send
  cookies with cross-site WebSocket handshakes too, so without this any web page could open
  the user's socket (cross-site WebSocket hijacking). A token is never sent implicitly.
Anything else leaves an anonymous user, and the consumer closes with 4401.
"""

from urllib.parse import urlsplit

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http.request import validate_host
from rest_framework.authtoken.models import Token

TOKEN_PREFIX = "token "


def header(scope, name):
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1").strip()
    return None


def token_key(scope):
    value = header(scope, b"authorization")
    if value and value.lower().startswith(TOKEN_PREFIX):
        return value[len(TOKEN_PREFIX):].strip() or None
    return None


def origin_is_ours(scope):
    origin = header(scope, b"origin")
    if origin is None:
        # Not a browser (browsers always send Origin on WebSocket handshakes).
        return True
    host = urlsplit(origin).hostname
    return bool(host) and validate_host(host, settings.ALLOWED_HOSTS)


@database_sync_to_async
def user_of_token(key):
    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return None
    return token.user


class WebSocketAuthMiddleware(BaseMiddleware):
    async def __call__(self, scope, receive, send):
        key = token_key(scope)
        user = await user_of_token(key) if key else None
        if user is None and not origin_is_ours(scope):
            user = AnonymousUser()
        if user is not None:
            scope = dict(scope, user=user)
        return await super().__call__(scope, receive, send)

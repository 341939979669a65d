"""WebSocket authentication: the browser's session cookie or an API token (``Authorization: Token``).

Channels' AuthMiddlewareStack (outside this middleware) puts the session's user in the scope.
This middleware then
- lets a valid ``Authorization: Token <key>`` header decide the user (mobile apps, scripts,
  the benchmark use the API token they use for REST), and
- trusts a session only when the handshake's ``Origin`` is one of our hosts: browsers send
  cookies with cross-site WebSocket handshakes too, so without this any web page could open
  the user's socket (cross-site WebSocket hijacking). A token is never sent implicitly.
Anything else leaves an anonymous user, and the consumer closes with 4401.

Tokens are knox's (tasks/tokens.py), checked by knox's own DRF authentication, so a socket, an
MCP request and a REST request accept exactly the same tokens. The scope remembers which token
opened the socket (``credential_of``), so that revoking it closes that socket.
"""

from urllib.parse import urlsplit

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http.request import validate_host
from knox.auth import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from tasks.tokens import session_credential

TOKEN_PREFIX = "token "
# Where the middleware leaves the digest of the token that authenticated the handshake.
TOKEN_DIGEST_SCOPE_KEY = "api_token_digest"


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
def api_token(key):
    """The live (unexpired, unrevoked) token of an active user that ``key`` is, or None."""
    try:
        _user, token = TokenAuthentication().authenticate_credentials(key.encode())
    except AuthenticationFailed:
        return None
    return token


async def user_of_token(key):
    token = await api_token(key)
    return None if token is None else token.user


def credential_of(scope):
    """What authenticated a connection, as ``tasks.realtime.close_sockets`` names it."""
    if TOKEN_DIGEST_SCOPE_KEY in scope:
        return scope[TOKEN_DIGEST_SCOPE_KEY]
    return session_credential(scope["session"].session_key)


class WebSocketAuthMiddleware(BaseMiddleware):
    async def __call__(self, scope, receive, send):
        key = token_key(scope)
        token = await api_token(key) if key else None
        if token is not None:
            scope = dict(scope, user=token.user, **{TOKEN_DIGEST_SCOPE_KEY: token.digest})
        elif not origin_is_ours(scope):
            scope = dict(scope, user=AnonymousUser())
        return await super().__call__(scope, receive, send)

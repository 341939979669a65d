"""WebSocket authentication: the browser's session cookie or an API token (``Authorization: Token``).

Channels' AuthMiddlewareStack (outside this middleware) puts the session's user in the scope.
This middleware then
- lets a valid ``Authorization: Token <key>`` header decide the user (mobile apps, scripts,
  the benchmark use the API token they use for REST), and
- trusts a session only when the handshake's ``Origin`` is ours, by the rule Django's CSRF check
  applies to a session POST: the whole origin (scheme, host and port) is the handshake's own or
  one of CSRF_TRUSTED_ORIGINS. Browsers send cookies with cross-site WebSocket handshakes too, so
  without this any web page could open the user's socket (cross-site WebSocket hijacking); and
  they always send Origin, so a session handshake without one is refused. A token is never sent
  implicitly, so a token handshake needs no Origin.
Anything else leaves an anonymous user, and the consumer closes with 4401.

Tokens are knox's (tasks/accounts/tokens.py), checked by the REST API's own authentication class (knox's, minus a query), so a
socket, an MCP request and a REST request accept exactly the same tokens. The scope remembers
which token opened the socket (tasks.realtime.groups.credential_of), so that revoking it closes
that socket.
"""

from urllib.parse import urlsplit

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain
from rest_framework.exceptions import AuthenticationFailed

from tasks.accounts.tokens import TokenAuthentication
from tasks.realtime.groups import TOKEN_DIGEST_SCOPE_KEY

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


DEFAULT_PORTS = {"http": 80, "https": 443}


def normalized_origin(origin):
    """(scheme, host, port) of ``scheme://host[:port]``, the port made explicit; None if malformed."""
    try:
        parts = urlsplit(origin)
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:  # a port that is not a number, or out of range
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return parts.scheme, parts.hostname, port


def own_origin(scope):
    """The handshake's own origin: its scheme (wss behind TLS, also when uvicorn trusts the proxy's
    X-Forwarded-Proto) and its Host header, if that is a host we serve."""
    host = header(scope, b"host")
    if not host or not validate_host(split_domain_port(host)[0], settings.ALLOWED_HOSTS):
        return None
    return normalized_origin(f"{'https' if scope.get('scheme') in ('https', 'wss') else 'http'}://{host}")


def is_trusted(origin, trusted):
    """Whether ``origin`` is the CSRF_TRUSTED_ORIGINS entry ``trusted``, which may name a domain and
    its subdomains as ``https://*.example.com``, as for Django's CSRF check."""
    subdomains = "://*." in trusted
    scheme, host, port = normalized_origin(trusted.replace("://*.", "://", 1)) or (None, None, None)
    if not subdomains:
        return origin == (scheme, host, port)
    return (origin[0], origin[2]) == (scheme, port) and is_same_domain(origin[1], f".{host}")


def origin_is_ours(scope):
    """Whether the handshake's Origin is this site's own or one of CSRF_TRUSTED_ORIGINS; no Origin is not."""
    origin = normalized_origin(header(scope, b"origin") or "")
    if origin is None:
        return False
    return origin == own_origin(scope) or any(is_trusted(origin, trusted) for trusted in settings.CSRF_TRUSTED_ORIGINS)


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


class WebSocketAuthMiddleware(BaseMiddleware):
    async def __call__(self, scope, receive, send):
        key = token_key(scope)
        token = await api_token(key) if key else None
        if token is not None:
            scope = dict(scope, user=token.user, **{TOKEN_DIGEST_SCOPE_KEY: token.digest})
        elif not origin_is_ours(scope):
            scope = dict(scope, user=AnonymousUser())
        return await super().__call__(scope, receive, send)

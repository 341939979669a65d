"""The sync WebSocket's door: a session cookie opens it only from our own origin.

Threat: a page on another origin (another site, or ours under another scheme or port) opens
/ws/sync/ in a signed-in user's browser, which sends the session cookie along (cross-site
WebSocket hijacking); or a script sends the stolen cookie without an Origin. What they get: 4401,
unless the whole origin (scheme, host, port) is the handshake's own or one of CSRF_TRUSTED_ORIGINS.
A token is never sent implicitly, so a token handshake needs no Origin.
"""

import json

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import Client
from rest_framework.test import APIClient

from tasks.models import User
from tasks.realtime.consumers import CLOSE_UNAUTHENTICATED
from tasks.realtime.groups import user_group_name
from todo_project.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

TRUSTED = "http://127.0.0.1:8000"  # the default CSRF_TRUSTED_ORIGINS
PROBE = {"probe": "is this socket open?"}


@pytest.fixture
def session_cookie():
    client = Client()
    client.force_login(User.objects.create_user("ada", password="a-long-passphrase"))
    return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())


def handshake(headers, scheme="ws"):
    """What the server does with the handshake: "accepted", or the close code."""

    async def attempt():
        communicator = WebsocketCommunicator(application, "/ws/sync/", headers=headers)
        communicator.scope["scheme"] = scheme
        connected, code = await communicator.connect(timeout=10)
        if not connected:
            return code
        # A refused socket is closed right after its accept and joins no group; an accepted one joined
        # its user's group before the accept. A push to every user's group tells the two apart as soon
        # as the answer comes, instead of waiting for a close that may never come.
        for user_id in await database_sync_to_async(list)(User.objects.values_list("id", flat=True)):
            await get_channel_layer().group_send(user_group_name(user_id), {"type": "push", "message": PROBE})
        output = await communicator.receive_output(timeout=10)
        # Hanging up ends the consumer at once (a browser answers a close too); waiting for it to end
        # by itself took the whole of the communicator's 1 s timeout.
        await communicator.disconnect()
        if output == {"type": "websocket.send", "text": json.dumps(PROBE)}:
            return "accepted"
        return output.get("code") if output["type"] == "websocket.close" else output

    return async_to_sync(attempt)()


def origin(value):
    return (b"origin", value.encode())


def test_a_session_from_a_trusted_origin_is_accepted(session_cookie):
    assert handshake([session_cookie, origin(TRUSTED)]) == "accepted"


@pytest.mark.parametrize(
    "stranger",
    ["https://127.0.0.1:8000", "http://127.0.0.1:9000", "http://127.0.0.1", "http://evil.example:8000",
     "http://127.0.0.1.evil.example:8000", "null", "not an origin", "http://127.0.0.1:99999"],
    ids=["other scheme", "other port", "default port", "other host", "suffixed host", "null", "garbage",
         "bad port"],
)
def test_a_session_from_any_other_origin_is_closed_with_4401(session_cookie, stranger):
    assert handshake([session_cookie, origin(stranger)]) == CLOSE_UNAUTHENTICATED


def test_a_session_without_an_origin_is_closed_with_4401(session_cookie):
    assert handshake([session_cookie]) == CLOSE_UNAUTHENTICATED


def test_a_session_from_the_handshakes_own_origin_is_accepted_like_a_csrf_check(session_cookie):
    headers = [session_cookie, (b"host", b"localhost:8123"), origin("http://localhost:8123")]
    assert handshake(headers) == "accepted"
    # Behind TLS (wss, as uvicorn reports it for a trusted proxy's X-Forwarded-Proto) the origin is https.
    assert handshake(headers, scheme="wss") == CLOSE_UNAUTHENTICATED
    secure = [session_cookie, (b"host", b"localhost"), origin("https://localhost")]
    assert handshake(secure, scheme="wss") == "accepted"


def test_the_own_origin_counts_only_for_a_host_we_serve(session_cookie):
    headers = [session_cookie, (b"host", b"evil.example:8123"), origin("http://evil.example:8123")]
    assert handshake(headers) == CLOSE_UNAUTHENTICATED


def test_a_trusted_wildcard_admits_subdomains_on_its_scheme_and_port_only(session_cookie, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://*.example.com"]
    assert handshake([session_cookie, origin("https://app.example.com")]) == "accepted"
    assert handshake([session_cookie, origin("https://example.com")]) == "accepted"
    assert handshake([session_cookie, origin("http://app.example.com")]) == CLOSE_UNAUTHENTICATED
    assert handshake([session_cookie, origin("https://app.example.com:8443")]) == CLOSE_UNAUTHENTICATED
    assert handshake([session_cookie, origin("https://example.com.evil.example")]) == CLOSE_UNAUTHENTICATED


def test_a_token_handshake_needs_no_origin():
    response = APIClient().post(
        "/api/auth/register/", {"username": "grace", "password": "a-long-passphrase", "timezone": "UTC"}, format="json"
    )
    token = response.json()["token"]
    assert handshake([(b"authorization", f"Token {token}".encode())]) == "accepted"

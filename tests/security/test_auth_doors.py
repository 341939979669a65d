"""The sign-in doors and the API tokens, as a stranger and another user try them (CONTRACT.md 7, "Trust").

- A stranger guessing passwords at POST /api/auth/token/, /login/ or /admin/login/, or registering
  accounts in bulk at /api/auth/register/, is refused with 429 and Retry-After once past the
  limit, per client address and (sign-in) per username, before any password is hashed.
- A stolen database gives no tokens: they are stored as digests. A token expires; DELETE
  /api/auth/token/ revokes it for REST, the WebSocket handshake and MCP alike; a password change,
  by the API or the admin, revokes every old token.
- An open WebSocket does not outlive its credential: revoking its token, signing out its session
  or changing the password closes it with 4401 (real uvicorn and Redis channel layer), and
  nobody else's socket.
- The admin shows who holds tokens, never a token.
- A user cannot schedule reminders without bound: beyond the hourly cap a write gets 429 and
  changes nothing.
- With the counters' Redis unreachable, every counted door answers 503 with Retry-After and logs
  why: never a 500, never an uncounted guess let through.
"""

import asyncio
import hashlib
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import connection
from django.test import Client
from django.utils.crypto import get_random_string
from knox.models import AuthToken
from knox.settings import CONSTANTS
from rest_framework.test import APIClient
from websockets.asyncio.client import connect

from events.models import OutboxEvent
from tasks.accounts.services import user_register
from tasks.accounts.tokens import issue, purge_expired_tokens, token_with_user
from tasks.models import Task, User
from tasks.realtime.consumers import CLOSE_UNAUTHENTICATED
from tasks.realtime.groups import push_message, user_group_name

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "a-long-passphrase"
NEW_PASSWORD = "another-long-passphrase"
STRANGER, NEIGHBOUR = "203.0.113.7", "198.51.100.9"
# How long a revoked credential's socket may stay open.
CLOSE_DEADLINE_SECONDS = 10
ORIGIN = "http://127.0.0.1:8000"


class CountingHasher(PBKDF2PasswordHasher):
    """Django's PBKDF2 hasher, counting the hashes computed (and cheaper, for a quick suite)."""

    iterations = 1000
    computed = 0

    def encode(self, password, salt, iterations=None):
        type(self).computed += 1
        return super().encode(password, salt, iterations)


@pytest.fixture(autouse=True)
def hashes(settings):
    settings.PASSWORD_HASHERS = [f"{__name__}.CountingHasher"]
    return CountingHasher


@pytest.fixture
def ada():
    return user_register(username="ada", password=PASSWORD)


@pytest.fixture
def grace():
    return user_register(username="grace", password=PASSWORD)


# --- the doors ----------------------------------------------------------------------------------


def token_door(username, password, address):
    body = json.dumps({"username": username, "password": password})
    return Client().post("/api/auth/token/", body, content_type="application/json", REMOTE_ADDR=address)


def login_door(username, password, address):
    return Client().post("/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


def admin_login_door(username, password, address):
    return Client().post("/admin/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


def register_door(username, address):
    body = json.dumps({"username": username, "password": PASSWORD})
    return Client().post("/api/auth/register/", body, content_type="application/json", REMOTE_ADDR=address)


SIGN_IN_DOORS = pytest.mark.parametrize(
    "door", [token_door, login_door, admin_login_door], ids=["api token", "login", "admin login"]
)


def assert_refused(response, window_seconds):
    assert response.status_code == 429, response.content
    assert 0 < int(response["Retry-After"]) <= window_seconds
    assert "try again in" in response.json()["detail"]


@SIGN_IN_DOORS
def test_a_stranger_guessing_a_password_is_refused_with_429_before_any_hash_is_computed(door, ada, hashes, settings):
    settings.SIGN_IN_RATE_PER_USERNAME = "3/15m"
    for _ in range(3):
        assert door("ada", "guess", STRANGER).status_code != 429
    computed = hashes.computed
    assert_refused(door("ada", "guess", STRANGER), 15 * 60)
    # Refused without looking: the right password gets no further, and no hash was spent.
    assert_refused(door("ada", PASSWORD, STRANGER), 15 * 60)
    assert hashes.computed == computed


def test_with_the_default_limits_forty_guesses_in_a_row_do_not_all_get_an_answer(ada, settings):
    statuses = [token_door("ada", f"guess-{n}", STRANGER).status_code for n in range(40)]
    allowed = int(settings.SIGN_IN_RATE_PER_USERNAME.split("/")[0])
    assert statuses[:allowed] == [400] * allowed
    assert set(statuses[allowed:]) == {429}


def test_the_sign_in_limit_per_address_stops_one_address_trying_many_names(settings):
    settings.SIGN_IN_RATE_PER_ADDRESS = "3/15m"
    for name in ("ada", "grace", "linus"):
        assert token_door(name, "guess", STRANGER).status_code == 400
    assert_refused(token_door("ken", "guess", STRANGER), 15 * 60)
    assert token_door("ken", "guess", NEIGHBOUR).status_code == 400  # another address is not punished


def test_the_sign_in_limit_per_username_stops_many_addresses_trying_one_name_at_every_door(ada, grace, settings):
    settings.SIGN_IN_RATE_PER_USERNAME = "3/15m"
    assert token_door("ada", "guess", "192.0.2.1").status_code == 400
    assert login_door("Ada", "guess", "192.0.2.2").status_code == 200  # the form again, with an error
    assert admin_login_door("ADA", "guess", "192.0.2.3").status_code == 200
    assert_refused(token_door("ada", PASSWORD, "192.0.2.4"), 15 * 60)
    assert token_door("grace", PASSWORD, "192.0.2.4").status_code == 200  # another name is not punished


def test_registering_accounts_in_bulk_from_one_address_is_refused_with_429(settings):
    settings.REGISTER_RATE_PER_ADDRESS = "2/h"
    assert register_door("bot-1", STRANGER).status_code == 201
    assert register_door("bot-2", STRANGER).status_code == 201
    assert_refused(register_door("bot-3", STRANGER), 60 * 60)
    assert not User.objects.filter(username="bot-3").exists()
    assert register_door("bot-3", NEIGHBOUR).status_code == 201


# --- tokens ---------------------------------------------------------------------------------------


def api(token):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def sign_in(username, password=PASSWORD):
    response = APIClient().post("/api/auth/token/", {"username": username, "password": password}, format="json")
    assert response.status_code == 200, response.json()
    return response.json()["token"]


def test_a_token_is_stored_only_as_its_digest(ada):
    token = sign_in("ada")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {AuthToken._meta.db_table}")
        rows = cursor.fetchall()
    assert len(rows) == 1
    assert not any(str(value) == token for value in rows[0])
    assert AuthToken.objects.get().digest == hashlib.sha512(token.encode()).hexdigest()


def test_each_sign_in_gets_its_own_token_and_each_works(ada):
    first, second = sign_in("ada"), sign_in("ada")
    assert first != second
    assert api(first).get("/api/auth/me/").status_code == 200
    assert api(second).get("/api/auth/me/").status_code == 200


def test_a_token_expires_after_the_configured_time(ada, settings):
    token = sign_in("ada")
    issued = AuthToken.objects.get()
    lifetime = issued.expiry - issued.created  # two clock readings of one insert
    assert abs(lifetime - timedelta(hours=settings.API_TOKEN_TTL_HOURS)) < timedelta(seconds=1)
    AuthToken.objects.update(expiry=datetime.now(UTC) - timedelta(seconds=1))
    assert api(token).get("/api/auth/me/").status_code == 401


def test_an_expired_token_is_deleted_when_presented_and_the_others_by_the_purge(ada, django_assert_num_queries):
    presented, other, live = sign_in("ada"), sign_in("ada"), sign_in("ada")
    key = CONSTANTS.TOKEN_KEY_LENGTH
    AuthToken.objects.filter(token_key__in=[presented[:key], other[:key]]).update(expiry=datetime.now(UTC) - timedelta(seconds=1))
    assert api(presented).get("/api/auth/me/").status_code == 401
    assert AuthToken.objects.count() == 2  # the presented one is gone; a request sweeps no other token
    with django_assert_num_queries(1):  # the token with its user: nothing else per request
        assert api(live).get("/api/auth/me/").status_code == 200
    assert purge_expired_tokens() == 1
    assert list(AuthToken.objects.values_list("token_key", flat=True)) == [live[:key]]


def test_a_token_is_found_by_its_digest_as_the_orm_reads_it_with_its_user(ada):
    token = sign_in("ada")
    found = token_with_user(hashlib.sha512(token.encode()).hexdigest())
    stored = AuthToken.objects.select_related("user").get()
    fields = [field.attname for field in AuthToken._meta.concrete_fields]
    user_fields = [field.attname for field in User._meta.concrete_fields]
    assert [getattr(found, name) for name in fields] == [getattr(stored, name) for name in fields]
    assert [getattr(found.user, name) for name in user_fields] == [getattr(stored.user, name) for name in user_fields]
    assert token_with_user(hashlib.sha512(b"0" * len(token)).hexdigest()) is None


@pytest.mark.parametrize("presented", ["not-hex", "é" * 64, ""])
def test_a_malformed_token_is_a_401(ada, presented):
    assert api(presented).get("/api/auth/me/").status_code == 401


def test_delete_revokes_the_presented_token_only(ada):
    revoked, kept = sign_in("ada"), sign_in("ada")
    assert api(revoked).delete("/api/auth/token/").status_code == 204
    assert api(revoked).get("/api/auth/me/").status_code == 401
    assert api(kept).get("/api/auth/me/").status_code == 200


def test_delete_with_all_revokes_every_token_of_the_user_and_nobody_elses(ada, grace):
    first, second, other = sign_in("ada"), sign_in("ada"), sign_in("grace")
    assert api(first).delete("/api/auth/token/?all=true").status_code == 204
    assert api(first).get("/api/auth/me/").status_code == 401
    assert api(second).get("/api/auth/me/").status_code == 401
    assert api(other).get("/api/auth/me/").status_code == 200


def test_a_password_change_revokes_every_old_token_and_returns_a_working_one(ada):
    old, other_device = sign_in("ada"), sign_in("ada")
    response = api(old).post(
        "/api/auth/password/", {"old_password": PASSWORD, "new_password": NEW_PASSWORD}, format="json"
    )
    assert response.status_code == 200
    assert api(old).get("/api/auth/me/").status_code == 401
    assert api(other_device).get("/api/auth/me/").status_code == 401
    assert api(response.json()["token"]).get("/api/auth/me/").json()["username"] == "ada"
    assert sign_in("ada", NEW_PASSWORD)


@pytest.mark.parametrize(
    "body, field",
    [({"old_password": "a-guess", "new_password": NEW_PASSWORD}, "old_password"), ({"old_password": PASSWORD, "new_password": "123"}, "new_password")],
    ids=["wrong old password", "weak new password"],
)
def test_a_refused_password_change_names_the_field_and_revokes_nothing(ada, body, field):
    token = sign_in("ada")
    response = api(token).post("/api/auth/password/", body, format="json")
    assert response.status_code == 400 and field in response.json()
    assert api(token).get("/api/auth/me/").status_code == 200


@pytest.fixture
def admin_client():
    User.objects.create_superuser("root", password=PASSWORD)
    client = Client()
    client.login(username="root", password=PASSWORD)
    return client


def test_a_password_change_in_the_admin_revokes_the_users_tokens(ada, admin_client):
    token = sign_in("ada")
    response = admin_client.post(
        f"/admin/tasks/user/{ada.pk}/password/",
        {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"},
    )
    assert response.status_code == 302, response.content
    assert api(token).get("/api/auth/me/").status_code == 401


def test_the_admin_shows_who_holds_tokens_but_never_a_token(ada, admin_client):
    token = sign_in("ada")
    stored = AuthToken.objects.get()
    pages = [
        "/admin/",
        "/admin/tasks/apitoken/",
        "/admin/tasks/apitoken/?q=ada",
        f"/admin/tasks/apitoken/{stored.pk}/change/",
        f"/admin/tasks/apitoken/{stored.pk}/delete/",
        f"/admin/tasks/user/{ada.pk}/change/",
    ]
    for page in pages:
        response = admin_client.get(page)
        assert response.status_code == 200, page
        html = response.content.decode()
        # The token, or the part of it kept in clear to find its row; the digest (one-way) is the
        # row's primary key, so it is in the admin's links, but never shown as a value.
        assert token not in html and stored.token_key not in html, page
        assert "digest" not in html.lower() and "token key" not in html.lower(), page
    assert "API token of ada" in admin_client.get(f"/admin/tasks/apitoken/{stored.pk}/change/").content.decode()
    assert admin_client.get("/admin/knox/authtoken/").status_code == 404  # knox's own admin is gone
    assert admin_client.get("/admin/tasks/apitoken/add/").status_code == 403


# --- open sockets -----------------------------------------------------------------------------


def ws_url(base_url):
    return base_url.replace("http://", "ws://") + "/ws/sync/"


def token_socket(base_url, token):
    return connect(ws_url(base_url), additional_headers={"Authorization": f"Token {token}"})


def session_socket(base_url, session_key):
    return connect(ws_url(base_url), additional_headers={"Cookie": f"sessionid={session_key}"}, origin=ORIGIN)


def session_of(user):
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


async def closed_with(socket):
    """The close code of a socket the server closes within the deadline."""
    await asyncio.wait_for(socket.wait_closed(), CLOSE_DEADLINE_SECONDS)
    return socket.close_code


async def still_open(socket, user):
    """A push to the user's group reaches the socket: it is open and subscribed."""
    marker = get_random_string(12)
    await get_channel_layer().group_send(user_group_name(user.pk), push_message({"marker": marker}))
    return json.loads(await asyncio.wait_for(socket.recv(), CLOSE_DEADLINE_SECONDS)) == {"marker": marker}


def in_thread(function, *args, **kwargs):
    """Blocking HTTP from inside the async scenario, so the event loop keeps reading the sockets."""
    return asyncio.to_thread(function, *args, **kwargs)


def test_revoking_a_token_closes_the_sockets_it_opened_and_no_other(web_server, ada, grace):
    revoked, kept, graces = issue(ada), issue(ada), issue(grace)

    async def scenario():
        async with token_socket(web_server, revoked) as doomed, token_socket(web_server, kept) as phone, \
                token_socket(web_server, graces) as neighbour:
            response = await in_thread(
                httpx.delete, f"{web_server}/api/auth/token/", headers={"Authorization": f"Token {revoked}"}
            )
            assert response.status_code == 204
            return await closed_with(doomed), await still_open(phone, ada), await still_open(neighbour, grace)

    assert async_to_sync(scenario)() == (CLOSE_UNAUTHENTICATED, True, True)


def test_a_revoked_token_opens_nothing_afterwards_rest_websocket_or_mcp(web_server, ada):
    token = issue(ada)
    headers = {"Authorization": f"Token {token}"}
    assert httpx.delete(f"{web_server}/api/auth/token/", headers=headers).status_code == 204
    assert httpx.get(f"{web_server}/api/auth/me/", headers=headers).status_code == 401

    async def handshake():
        async with token_socket(web_server, token) as socket:
            return await closed_with(socket)

    assert async_to_sync(handshake)() == CLOSE_UNAUTHENTICATED
    mcp = httpx.post(
        f"{web_server}/mcp/",
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"},
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
    )
    assert mcp.status_code == 401


def test_signing_out_closes_the_sockets_of_that_session_only(web_server, ada):
    session_key, token = session_of(ada), issue(ada)
    csrf = get_random_string(32)

    def sign_out():
        return httpx.post(
            f"{web_server}/logout/",
            cookies={"sessionid": session_key, "csrftoken": csrf},
            headers={"X-CSRFToken": csrf},
        )

    async def scenario():
        async with session_socket(web_server, session_key) as browser, token_socket(web_server, token) as phone:
            assert await still_open(browser, ada)
            await phone.recv()  # the marker for both of Ada's sockets
            response = await in_thread(sign_out)
            assert response.status_code == 302, response.text
            return await closed_with(browser), await still_open(phone, ada)

    assert async_to_sync(scenario)() == (CLOSE_UNAUTHENTICATED, True)


def test_a_password_change_closes_every_socket_of_the_user_and_nobody_elses(web_server, ada, grace):
    token, other_device, session_key, graces = issue(ada), issue(ada), session_of(ada), issue(grace)

    def change_password():
        return httpx.post(
            f"{web_server}/api/auth/password/",
            headers={"Authorization": f"Token {token}"},
            json={"old_password": PASSWORD, "new_password": NEW_PASSWORD},
        )

    async def scenario():
        async with token_socket(web_server, token) as first, token_socket(web_server, other_device) as second, \
                session_socket(web_server, session_key) as browser, token_socket(web_server, graces) as neighbour:
            response = await in_thread(change_password)
            assert response.status_code == 200, response.text
            codes = [await closed_with(socket) for socket in (first, second, browser)]
            return codes, await still_open(neighbour, grace)

    assert async_to_sync(scenario)() == ([CLOSE_UNAUTHENTICATED] * 3, True)


# --- reminders ------------------------------------------------------------------------------------


def test_a_write_beyond_the_hourly_reminder_cap_is_refused_with_429_and_changes_nothing(ada, settings):
    settings.REMINDERS_PER_USER_PER_HOUR = 2
    client = api(issue(ada))
    due = datetime.now(UTC) + timedelta(days=1)
    reminded = {"due_date": due.isoformat(), "remind_at": (due - timedelta(hours=1)).isoformat()}
    for n in range(2):
        assert client.post("/api/tasks/", {"title": f"call {n}", **reminded}, format="json").status_code == 201
    tasks, events = Task.objects.count(), OutboxEvent.objects.count()
    refused = client.post("/api/tasks/", {"title": "one more", **reminded}, format="json")
    assert_refused(refused, 60 * 60)
    assert "reminders" in refused.json()["detail"]
    assert (Task.objects.count(), OutboxEvent.objects.count()) == (tasks, events)
    task = client.post("/api/tasks/", {"title": "no reminder"}, format="json")
    assert task.status_code == 201  # writes without a reminder are not capped
    moved = client.patch(f"/api/tasks/{task.json()['id']}/", reminded, format="json")
    assert_refused(moved, 60 * 60)
    assert Task.objects.get(pk=task.json()["id"]).remind_at is None


# --- the counters unreachable ---------------------------------------------------------------------


@pytest.fixture
def counters_unreachable(settings, free_port):
    """The rate-limit counters' cache pointed at a port where nobody listens (Redis down)."""
    settings.CACHES = {**settings.CACHES, "ratelimit": {**settings.CACHES["ratelimit"], "LOCATION": f"redis://127.0.0.1:{free_port}/0"}}


def assert_unavailable(response, caplog):
    assert response.status_code == 503, response.content
    assert int(response["Retry-After"]) > 0
    assert "try again in" in response.json()["detail"]
    assert "rate limiter: the counters' cache is unreachable" in caplog.text


@SIGN_IN_DOORS
def test_with_the_counters_unreachable_a_sign_in_is_refused_with_503_before_any_hash_is_computed(
    door, ada, hashes, counters_unreachable, caplog
):
    computed = hashes.computed
    assert_unavailable(door("ada", PASSWORD, STRANGER), caplog)
    assert hashes.computed == computed


def test_with_the_counters_unreachable_registration_is_refused_with_503_and_creates_nobody(counters_unreachable, caplog):
    assert_unavailable(register_door("bot-1", STRANGER), caplog)
    assert not User.objects.filter(username="bot-1").exists()


def test_with_the_counters_unreachable_a_write_scheduling_a_reminder_is_refused_with_503_and_changes_nothing(
    ada, counters_unreachable, caplog
):
    client = api(issue(ada))
    due = datetime.now(UTC) + timedelta(days=1)
    refused = client.post(
        "/api/tasks/", {"title": "call", "due_date": due.isoformat(), "remind_at": (due - timedelta(hours=1)).isoformat()}, format="json"
    )
    assert_unavailable(refused, caplog)
    assert not Task.objects.exists() and not OutboxEvent.objects.exists()
    assert client.post("/api/tasks/", {"title": "no reminder"}, format="json").status_code == 201  # not counted

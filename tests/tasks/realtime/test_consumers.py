"""The sync WebSocket /ws/sync/: who may connect, and that a push reaches its user's sockets only."""

import asyncio
import threading

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import Client

from tasks.accounts.tokens import issue
from tasks.realtime.consumers import CLOSE_UNAUTHENTICATED
from tasks.realtime.groups import user_group_name
from todo_project.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://127.0.0.1:8000")


def run(coroutine_function, *args):
    return async_to_sync(coroutine_function)(*args)


def token_headers(user):
    return [(b"authorization", f"Token {issue(user)}".encode())]


def session_headers(user, origin=ORIGIN):
    client = Client()
    client.force_login(user)
    return [(b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()), origin]


async def connect(headers):
    communicator = WebsocketCommunicator(application, "/ws/sync/", headers=headers)
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    return communicator


async def closed_with(headers):
    communicator = await connect(headers)
    output = await communicator.receive_output(timeout=10)
    # Hanging up, as a browser answers a close, ends the consumer at once; waiting for it to end by
    # itself took the whole of the communicator's 1 s timeout.
    await communicator.disconnect()
    return output


async def push(user, message):
    await get_channel_layer().group_send(user_group_name(user.id), {"type": "push", "message": message})


def test_a_handshake_without_credentials_is_closed_with_4401():
    output = run(closed_with, [])
    assert output == {"type": "websocket.close", "code": CLOSE_UNAUTHENTICATED}


def test_an_unknown_token_is_closed_with_4401():
    output = run(closed_with, [(b"authorization", b"Token not-a-real-token")])
    assert output == {"type": "websocket.close", "code": CLOSE_UNAUTHENTICATED}


def test_a_session_from_another_site_is_closed_with_4401(ada):
    headers = session_headers(ada, origin=(b"origin", b"https://evil.example"))
    output = run(closed_with, headers)
    assert output == {"type": "websocket.close", "code": CLOSE_UNAUTHENTICATED}


def test_a_token_connection_receives_its_users_pushes(ada):
    headers = token_headers(ada)

    async def scenario():
        socket = await connect(headers)
        await push(ada, {"event_type": "sync.task_changed", "data": {"n": 1}})
        received = await socket.receive_json_from(timeout=5)
        await socket.disconnect()
        return received

    assert run(scenario) == {"event_type": "sync.task_changed", "data": {"n": 1}}


def test_a_session_connection_receives_its_users_pushes(ada):
    headers = session_headers(ada)

    async def scenario():
        socket = await connect(headers)
        await push(ada, {"event_type": "notification.created", "data": {"id": 7}})
        received = await socket.receive_json_from(timeout=5)
        await socket.disconnect()
        return received

    assert run(scenario) == {"event_type": "notification.created", "data": {"id": 7}}


def test_a_push_reaches_the_socket_while_the_workers_sync_thread_is_busy(ada):
    """A push waits for no sync code: in a burst, hundreds of sockets' pushes would queue behind
    the one thread that runs it (a request's ORM work, say)."""
    headers = token_headers(ada)

    async def scenario():
        socket = await connect(headers)
        busy, release = threading.Event(), threading.Event()

        def hold_the_sync_thread():
            busy.set()
            release.wait(30)

        holder = asyncio.ensure_future(sync_to_async(hold_the_sync_thread)())
        try:
            assert await asyncio.to_thread(busy.wait, 10)
            await push(ada, {"n": 1})
            received = await socket.receive_json_from(timeout=5)
        finally:
            release.set()
            await holder
        await socket.disconnect()
        return received

    assert run(scenario) == {"n": 1}


def test_every_connection_of_a_user_receives_a_push_and_no_other_users_connection_does(ada, grace):
    ada_headers, ada_session, bob_headers = token_headers(ada), session_headers(ada), token_headers(grace)

    async def scenario():
        ada_phone, ada_laptop, bob_laptop = await asyncio.gather(
            connect(ada_headers), connect(ada_session), connect(bob_headers)
        )
        await push(ada, {"for": "ada"})
        await push(grace, {"for": "bob"})
        received = {
            "ada_phone": [await ada_phone.receive_json_from(timeout=5)],
            "ada_laptop": [await ada_laptop.receive_json_from(timeout=5)],
            "bob_laptop": [await bob_laptop.receive_json_from(timeout=5)],
        }
        # Bob's push was sent after Ada's, so anything more for Ada would have arrived by now.
        for name, socket in (("ada_phone", ada_phone), ("ada_laptop", ada_laptop), ("bob_laptop", bob_laptop)):
            if not await socket.receive_nothing(timeout=0.3):
                received[name].append(await socket.receive_json_from())
            await socket.disconnect()
        return received

    assert run(scenario) == {
        "ada_phone": [{"for": "ada"}],
        "ada_laptop": [{"for": "ada"}],
        "bob_laptop": [{"for": "bob"}],
    }


def test_a_closed_connection_leaves_its_users_group(ada):
    headers = token_headers(ada)

    async def scenario():
        socket = await connect(headers)
        await socket.disconnect()
        layer = get_channel_layer()
        # channels-redis keeps group members in a sorted set named after the group.
        connection = layer.connection(layer.consistent_hash(user_group_name(ada.id)))
        return await connection.zcard(layer._group_key(user_group_name(ada.id)))

    assert run(scenario) == 0

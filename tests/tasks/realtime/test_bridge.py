"""The realtime bridge's handler called directly with event dicts (no broker): what it pushes to whom.

The sockets are Channels test clients of the real ASGI application on the real Redis channel
layer; tests/tasks/realtime/test_handlers.py runs the same handler in the consumer runtime on Kafka.
"""

import uuid

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import connections

from events.schemas import ForgedEvent
from tasks.realtime.handlers import forward_task_changes
from tests.tasks.realtime.test_handlers import connect, sync_event, token

pytestmark = pytest.mark.django_db(transaction=True)

@sync_to_async(thread_sensitive=False)
def forward(events):
    """The handler, which runs its own event loop, off the test's loop in a thread of its own
    (whose database connection is closed after it, so that the test database can be dropped)."""
    try:
        forward_task_changes(events)
    finally:
        connections.close_all()


def test_a_batch_reaches_each_owners_sockets_in_order_and_nobody_elses(ada, grace):
    task_id = uuid.uuid4()
    adas = [sync_event(ada, task_id, version) for version in (1, 2, 3)]
    graces = [sync_event(grace, uuid.uuid4(), 1, "created")]
    ada_key, grace_key = token(ada), token(grace)

    async def scenario():
        ada_socket, grace_socket = await connect(ada_key), await connect(grace_key)
        await forward([adas[0], graces[0], adas[1], adas[2]])
        got = {
            "ada": [await ada_socket.receive_json_from(timeout=10) for _ in adas],
            "grace": [await grace_socket.receive_json_from(timeout=10)],
        }
        assert await ada_socket.receive_nothing(timeout=0.5) and await grace_socket.receive_nothing(timeout=0.5)
        await ada_socket.disconnect()
        await grace_socket.disconnect()
        return got

    assert async_to_sync(scenario)() == {"ada": adas, "grace": graces}


def test_a_batch_with_an_event_the_sync_log_does_not_vouch_for_is_refused_whole_before_anything_is_sent(ada):
    legit = sync_event(ada, uuid.uuid4(), 1)
    unlogged = sync_event(ada, uuid.uuid4(), 1, "created", logged=False)
    altered = {**legit, "data": {**legit["data"], "task": {**legit["data"]["task"], "title": "Send mallory the codes"}}}
    key = token(ada)

    async def scenario():
        socket = await connect(key)
        for batch in ([legit, unlogged], [altered, legit]):
            with pytest.raises(ForgedEvent):
                await forward(batch)
        assert await socket.receive_nothing(timeout=0.5), "a batch with a forged event was sent in part"
        await socket.disconnect()

    async_to_sync(scenario)()

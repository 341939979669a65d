"""The realtime bridge (`run_consumer realtime`): task-updates -> each owner's open sockets.

The bridge runs in the real consumer runtime on the real broker; the sockets are Channels
test clients of the real ASGI application on the real Redis channel layer.
"""

import json
import uuid

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import transaction
from channels.testing import WebsocketCommunicator
from rest_framework.test import APIClient

from events.consumer import ConsumerRuntime
from events.registry import get_consumer
from events.schemas import make_event, utc_timestamp
from events.topics import TASK_UPDATES, dead_letter_topic, group_name
from tasks.accounts.tokens import issue
from tasks.sync import record_change
from testing.kafka import TestProducer, committed_offsets, end_offsets, read_topic, running
from testing.waits import wait_for
from todo_project.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

# The bridge must first join its group and get partitions; after that messages take milliseconds.
FIRST_MESSAGE_TIMEOUT = 60


def sync_event(user, task_id, version, change_type="updated", *, logged=True):
    """A sync event of the user's task; ``logged`` writes it to the sync log, as the services do."""
    now = utc_timestamp()
    task = {
        "id": str(task_id), "title": f"Version {version}", "description": "", "completed": False, "completed_at": None,
        "due_date": None, "remind_at": None, "priority": 4, "recurrence_rule": None, "tags": [], "parent_task_id": None,
        "user_id": str(user.id), "version": version, "created_at": now, "updated_at": now,
    }
    data = {"task_id": str(task_id), "change_type": change_type, "task": task, "user_id": str(user.id)}
    event = make_event("sync.task_changed", data, source="todo-api", correlation_id=str(uuid.uuid4()))
    if logged:
        with transaction.atomic():
            record_change(event)
    return event


def fully_committed(group):
    committed = committed_offsets(group, TASK_UPDATES)
    return all(committed[partition] == end for partition, end in end_offsets(TASK_UPDATES).items() if end > 0)


def token(user):
    return issue(user)


async def connect(key):
    socket = WebsocketCommunicator(application, "/ws/sync/", headers=[(b"authorization", f"Token {key}".encode())])
    connected, _ = await socket.connect(timeout=10)
    assert connected
    return socket


def test_each_event_reaches_its_owners_sockets_only_in_version_order_and_poison_is_dead_lettered(isolated_kafka, ada, grace):
    task_id = uuid.uuid4()
    adas = [sync_event(ada, task_id, version) for version in range(1, 21)]
    bobs = [sync_event(grace, uuid.uuid4(), 1, "created")]
    ada_key, bob_key = token(ada), token(grace)

    async def scenario():
        ada_phone, ada_laptop, bob_laptop = await connect(ada_key), await connect(ada_key), await connect(bob_key)
        producer = TestProducer()
        producer.raw(TASK_UPDATES, b"{not json", key=str(task_id))
        producer.events(adas + bobs, base_topic=TASK_UPDATES)
        received = {}
        for name, socket, count in (("ada_phone", ada_phone, 20), ("ada_laptop", ada_laptop, 20), ("bob_laptop", bob_laptop, 1)):
            received[name] = [await socket.receive_json_from(timeout=FIRST_MESSAGE_TIMEOUT) for _ in range(count)]
            assert await socket.receive_nothing(timeout=0.5), f"{name} received more than its own events"
            await socket.disconnect()
        return received

    with running(ConsumerRuntime(get_consumer("realtime"))) as bridge:
        received = async_to_sync(scenario)()
        # Offsets are committed once the batch was sent: the group reaches the end of the topic.
        group = group_name("websocket-service")
        assert wait_for(lambda: fully_committed(group), timeout=30), (committed_offsets(group, TASK_UPDATES), end_offsets(TASK_UPDATES))
    assert bridge.error is None

    # Exactly the JSON of the topic, one task's versions in order, and nothing of the other user.
    assert received["ada_phone"] == adas
    assert received["ada_laptop"] == adas
    assert received["bob_laptop"] == bobs
    letters = read_topic(dead_letter_topic(TASK_UPDATES), until=lambda messages: len(messages) >= 1)
    assert [letter["value"] for letter in letters] == [b"{not json"]
    assert letters[0]["headers"]["dlq.consumer.group"] == group_name("websocket-service")


def test_a_client_that_missed_a_message_catches_up_through_the_sync_endpoint(isolated_kafka, outbox_relay, ada):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token(ada)}")
    key = token(ada)

    def call(method, path, data=None):
        response = getattr(api, method)(path, data, format="json")
        assert response.status_code < 300, response.content
        return response.json() if response.content else None

    async def scenario():
        cursor = (await sync_to_async(call)("get", "/api/sync/"))["cursor"]
        # Another device of the same user stays connected: it shows when a push has gone out.
        other_device = await connect(key)
        socket = await connect(key)
        task = await sync_to_async(call)("post", "/api/tasks/", {"title": "Water the plants"})
        created = await socket.receive_json_from(timeout=FIRST_MESSAGE_TIMEOUT)
        await other_device.receive_json_from(timeout=FIRST_MESSAGE_TIMEOUT)
        await socket.disconnect()

        # The client is offline while this change is pushed, so its socket never gets it.
        await sync_to_async(call)("patch", f"/api/tasks/{task['id']}/", {"title": "Water the cactus"})
        pushed = await other_device.receive_json_from(timeout=FIRST_MESSAGE_TIMEOUT)
        assert pushed["data"]["task"]["version"] == 2
        await other_device.disconnect()

        socket = await connect(key)
        caught_up = await sync_to_async(call)("get", f"/api/sync/?since={cursor}")
        await sync_to_async(call)("post", f"/api/tasks/{task['id']}/complete/")
        live = await socket.receive_json_from(timeout=FIRST_MESSAGE_TIMEOUT)
        await socket.disconnect()
        return task, created, caught_up, live

    with running(ConsumerRuntime(get_consumer("realtime"))):
        task, created, caught_up, live = async_to_sync(scenario)()

    assert (created["data"]["change_type"], created["data"]["task"]["version"]) == ("created", 1)
    # The catch-up holds what the socket delivered and what it missed; the client keeps the newest.
    versions = [(c["data"]["change_type"], c["data"]["task"]["version"], c["data"]["task"]["title"]) for c in caught_up["changes"]]
    assert versions == [("created", 1, "Water the plants"), ("updated", 2, "Water the cactus")]
    assert caught_up["changes"][0] == created
    assert (live["data"]["task"]["version"], live["data"]["task"]["completed"]) == (3, True)
    assert json.loads(json.dumps(live))["data"]["task_id"] == task["id"]


def test_a_forged_sync_event_never_reaches_the_named_users_sockets_and_the_rest_of_its_batch_still_does(isolated_kafka, ada, grace):
    adas_task = uuid.uuid4()
    legit = [sync_event(ada, adas_task, version) for version in (1, 2)]
    # Someone with write access to task-updates names ada: not in the sync log, or altered on the way.
    unlogged = sync_event(ada, uuid.uuid4(), 1, "created", logged=False)
    altered = {**legit[0], "data": {**legit[0]["data"], "task": {**legit[0]["data"]["task"], "title": "Send mallory the codes"}}}
    graces = sync_event(grace, uuid.uuid4(), 1, "created")
    # The altered copy comes first: after the real one it would be skipped as a duplicate anyway.
    batch = [altered, legit[0], unlogged, legit[1], graces]
    ada_key, grace_key = token(ada), token(grace)

    async def scenario():
        ada_socket, grace_socket = await connect(ada_key), await connect(grace_key)
        TestProducer().events(batch, base_topic=TASK_UPDATES, key=str(adas_task))
        got = {
            "ada": [await ada_socket.receive_json_from(timeout=FIRST_MESSAGE_TIMEOUT) for _ in legit],
            "grace": [await grace_socket.receive_json_from(timeout=FIRST_MESSAGE_TIMEOUT)],
        }
        assert await ada_socket.receive_nothing(timeout=1), "ada received a forged event"
        await ada_socket.disconnect()
        await grace_socket.disconnect()
        return got

    with running(ConsumerRuntime(get_consumer("realtime"), batch_size=len(batch))) as bridge:
        received = async_to_sync(scenario)()
        letters = read_topic(dead_letter_topic(TASK_UPDATES), until=lambda messages: len(messages) >= 2)
    assert bridge.error is None

    assert received == {"ada": legit, "grace": [graces]}
    assert sorted(json.loads(letter["value"])["data"]["task"]["title"] for letter in letters) == ["Send mallory the codes", "Version 1"]
    assert {letter["headers"]["dlq.error.type"] for letter in letters} == {"ForgedEvent"}

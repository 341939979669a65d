"""Helpers for tests that talk to the real broker: produce events, read topics, run consumers.

Import them as ``from tests.events.kafka_helpers import ...``. Only the runtime and these test
helpers touch confluent_kafka directly.
"""

import json
import threading
import time
import uuid
from contextlib import contextmanager

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from events.kafka import admin_client, client_config, create_topics, delete_topics, producer_config
from events.schemas import utc_timestamp
from events.topics import TASK_EVENTS, TOPICS, topic_name
from tasks.events import SYNC_CHANGE_OF, EventContext, sync_event
from tasks.events import task_event as make_task_event
from tasks.models import User
from tasks.sync import record_change


def wait_for(condition, timeout=60.0, interval=0.05):
    """Poll ``condition`` until it returns something truthy or ``timeout`` passes; return its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    return condition()


@pytest.fixture
def isolated_kafka(settings, monkeypatch):
    """A fresh topic and group namespace for one test (settings and env for subprocesses)."""
    prefix = f"test-{uuid.uuid4().hex[:8]}-"
    settings.KAFKA_TOPIC_PREFIX = prefix
    settings.KAFKA_GROUP_PREFIX = prefix
    monkeypatch.setenv("KAFKA_TOPIC_PREFIX", prefix)
    monkeypatch.setenv("KAFKA_GROUP_PREFIX", prefix)
    create_topics()
    assert wait_for(lambda: all(_answers_offsets(spec.base_name) for spec in TOPICS), timeout=60), "topics not ready"
    yield prefix
    delete_topics([prefix + spec.base_name for spec in TOPICS])


def _answers_offsets(base_topic):
    # A new topic's partitions take a moment to get a leader; until then offset queries fail.
    try:
        end_offsets(base_topic, timeout=5.0)
        return True
    except KafkaException:
        return False


def task_event(event_type="task.created", *, task_id=None, user_id=None, title="Buy milk", logged=True, **data):
    """A complete, valid task event (CONTRACT.md section 4), made as the services make it.

    With ``logged`` (the default) the sync-log row that the services write beside it is written
    too (tasks.sync.record_change of the sync event of the same task version), so the consumers
    that check task events against the log (the audit trail) take it for a real one; with
    ``logged=False`` it is a forgery. ``user_id`` names an existing user; by default the event's
    owner is a user of this helper's (``event_owner``), or, unlogged, a user id nobody has.
    """
    if user_id is None:
        user_id = str(event_owner().id) if logged else "0"
    now = utc_timestamp()
    task = {
        "id": str(task_id or uuid.uuid4()), "title": title, "description": "", "completed": event_type == "task.completed",
        "completed_at": now if event_type == "task.completed" else None, "due_date": None, "remind_at": None,
        "priority": 4, "recurrence_rule": None, "tags": [], "parent_task_id": None, "version": 1,
        "user_id": str(user_id), "created_at": now, "updated_at": now, **data,
    }
    context = EventContext(source="todo-api", correlation_id=str(uuid.uuid4()))
    if logged:
        record_change(sync_event(SYNC_CHANGE_OF[event_type], task, context))
    return make_task_event(event_type, task, context)


def event_owner():
    """The user that ``task_event`` gives its events to when the test names none."""
    return User.objects.get_or_create(username="event-owner")[0]


class TestProducer:
    """Produces to a topic (base name) and reports where each message landed."""

    __test__ = False

    def __init__(self, **config):
        """``config``: librdkafka settings of the producer, e.g. a larger ``message.max.bytes``."""
        # The project's partitioner: a key lands where the relay's and the other producers' messages of that key do.
        self._producer = Producer(producer_config(**{"linger.ms": 5, **config}))

    def raw(self, base_topic, value, *, key=None, headers=None):
        """Produce bytes/str as is; return (partition, offset) once the broker confirmed it."""
        return self.raw_many(base_topic, [(value, key, headers)])[0]

    def event(self, event, *, base_topic=TASK_EVENTS, key=None):
        return self.events([event], base_topic=base_topic, key=key)[0]

    def events(self, events, *, base_topic=TASK_EVENTS, key=None):
        """Produce events as the outbox relay does: JSON value, key = task_id, event headers."""
        return self.raw_many(
            base_topic,
            [
                (
                    json.dumps(event),
                    key or event["data"].get("task_id"),
                    [("event_type", event["event_type"]), ("event_id", event["event_id"])],
                )
                for event in events
            ],
        )

    def raw_many(self, base_topic, messages):
        reports = [None] * len(messages)
        for index, (value, key, headers) in enumerate(messages):

            def report(err, msg, index=index):
                reports[index] = err or (msg.partition(), msg.offset())

            self._producer.produce(topic_name(base_topic), value=value, key=key, headers=headers or [], on_delivery=report)
            self._producer.poll(0)
        assert self._producer.flush(30) == 0, "the broker did not confirm every message"
        failures = [report for report in reports if not isinstance(report, tuple)]
        assert not failures, failures
        return reports


def read_topic(base_topic, *, until, timeout=60.0):
    """Read a topic from the beginning (a new group each call) until ``until(messages)`` is true.

    Messages are dicts ``{partition, offset, key, value, headers}`` with str headers.
    """
    consumer = Consumer(
        client_config(**{"group.id": f"test-reader-{uuid.uuid4().hex}", "auto.offset.reset": "earliest", "enable.auto.commit": False})
    )
    consumer.subscribe([topic_name(base_topic)])
    messages = []
    deadline = time.monotonic() + timeout
    try:
        while not until(messages) and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None or message.error():
                continue
            messages.append(
                {
                    "partition": message.partition(),
                    "offset": message.offset(),
                    "key": message.key(),
                    "value": message.value(),
                    "headers": {key: value.decode() for key, value in (message.headers() or [])},
                }
            )
    finally:
        consumer.close()
    return messages


def message_count(base_topic, timeout=10.0):
    """Messages ever written to a topic: the sum of its partitions' high watermarks (nothing expires in tests)."""
    name = topic_name(base_topic)
    consumer = Consumer(client_config(**{"group.id": f"test-counter-{uuid.uuid4().hex}"}))
    try:
        partitions = admin_client().list_topics(name, timeout=timeout).topics[name].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(name, p), timeout=timeout)[1] for p in partitions)
    finally:
        consumer.close()


def committed_offsets(group, base_topic, timeout=10.0):
    """{partition: committed offset} of a consumer group (full group name) on a topic."""
    name = topic_name(base_topic)
    consumer = Consumer(client_config(**{"group.id": group}))
    try:
        partitions = admin_client().list_topics(name, timeout=timeout).topics[name].partitions
        committed = consumer.committed([TopicPartition(name, p) for p in partitions], timeout=timeout)
        return {tp.partition: tp.offset for tp in committed}
    finally:
        consumer.close()


def end_offsets(base_topic, timeout=10.0):
    name = topic_name(base_topic)
    consumer = Consumer(client_config(**{"group.id": f"test-counter-{uuid.uuid4().hex}"}))
    try:
        partitions = admin_client().list_topics(name, timeout=timeout).topics[name].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(name, p), timeout=timeout)[1] for p in partitions}
    finally:
        consumer.close()


class RunningConsumer:
    def __init__(self, runtime):
        self.runtime = runtime
        self.error = None
        self.thread = threading.Thread(target=self._run, name=f"consumer-{runtime.name}", daemon=True)

    def _run(self):
        try:
            self.runtime.run()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.error = exc


def run_in_main_thread(runtime, *, until, timeout=60.0):
    """Run a ConsumerRuntime in this (the main) thread, as ``run_consumer`` does, until ``until()``
    is true or ``timeout`` passes; then stop it. Only there does the handler time budget signal."""
    def stop_when_done():
        wait_for(until, timeout=timeout)
        runtime.stop()

    stopper = threading.Thread(target=stop_when_done, name=f"stop-{runtime.name}", daemon=True)
    stopper.start()
    try:
        runtime.run()
    finally:
        runtime.stop()
        stopper.join(timeout)


@contextmanager
def running(runtime, *, join_timeout=60.0):
    """Run a ConsumerRuntime in a thread for the block; stop it and fail if it does not stop."""
    handle = RunningConsumer(runtime)
    handle.thread.start()
    try:
        yield handle
    finally:
        runtime.stop()
        handle.thread.join(join_timeout)
        assert not handle.thread.is_alive(), "the consumer did not stop"

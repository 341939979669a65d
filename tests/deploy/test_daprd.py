"""EVENT_TRANSPORT=dapr through a real Dapr sidecar, side by side with the Kafka transport.

Both transports run the same scenario on the real broker and database, each in a topic and group
namespace of its own: the outbox relay (a thread of this process) publishes the services' events,
the four Dapr-deliverable consumers process them (``run_consumer`` processes, or delivery
applications behind daprd sidecars loading the chart's rendered Components, Subscriptions and
Resiliency), the scheduler fires a reminder. Then, whatever the transport: every event reaches
every consumer that wants it, once; one task's events keep their order on one partition; a
redelivered event changes nothing; a forged event is dead-lettered with its key and headers and its
true Kafka coordinates; the bytes, key and headers on Kafka are the outbox row's. The Dapr stack
also waits out an outage of the relay's sidecar, and its publishes land on the partition that the
project's own producers (librdkafka, ``fnv1a_random``) pick for the same key.
"""

import json
import os
import uuid
from datetime import timedelta

import pytest
import yaml
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic
from django.conf import settings
from django.utils import timezone

from audit.models import AuditEntry
from events.transports.dapr import DaprSidecar
from events.transports.kafka.admin import admin_client, create_topics, delete_topics
from events.transports.kafka.config import client_config, producer_config
from events.models import OutboxEvent, ProcessedEvent
from events.registry import CONSUMERS
from events.topics import TASK_EVENTS, TASK_UPDATES, TOPICS, group_name, topic_name
from notifications.models import Notification
from tasks.events import EventContext
from tasks.models import Task, User
from tasks.services import task_complete, task_create, task_update
from tests.deploy.daprd_helpers import DaprStack, Sidecar, publisher_component, require_daprd
from testing.factories import task_event
from testing.outbox import relay_thread
from testing.processes import Process, manage, worker_environment
from testing.waits import wait_for

pytestmark = pytest.mark.django_db(transaction=True)
DAPR_ONLY = pytest.mark.parametrize("stack", ["dapr"], indirect=True)

API = EventContext(source="todo-api", correlation_id="e2e")
DELIVERED_TIMEOUT = 90.0
# What the delivery application logs for each 503 (RETRY) answer to the realtime route.
RETRY_ANSWERED = "ERROR django.request: Service Unavailable: /dapr/events/realtime"


class Namespace:
    """Topics and consumer groups of one transport's stack, apart from the session's and each other's."""

    def __init__(self, run_prefix, name):
        self.prefix = f"{run_prefix}{name}-"
        self._saved = (settings.KAFKA_TOPIC_PREFIX, settings.KAFKA_GROUP_PREFIX)

    def __enter__(self):
        settings.KAFKA_TOPIC_PREFIX = settings.KAFKA_GROUP_PREFIX = self.prefix
        os.environ["KAFKA_TOPIC_PREFIX"] = os.environ["KAFKA_GROUP_PREFIX"] = self.prefix
        create_topics()
        return self

    def __exit__(self, *exc):
        delete_topics([topic_name(spec.base_name) for spec in TOPICS])
        settings.KAFKA_TOPIC_PREFIX, settings.KAFKA_GROUP_PREFIX = self._saved
        os.environ["KAFKA_TOPIC_PREFIX"], os.environ["KAFKA_GROUP_PREFIX"] = self._saved


class KafkaStack:
    """The Kafka transport: ``run_consumer <name>`` per Dapr-deliverable consumer."""

    transport = "kafka"

    def __init__(self, log_dir):
        self.log_dir = log_dir
        self.consumers = {}

    def start(self):
        for name, spec in sorted(CONSUMERS.items()):
            if spec.via_dapr:
                log = self.log_dir / f"{name}.log"
                self.consumers[name] = Process(manage("run_consumer", name), log, worker_environment()).start()
        return self

    def stop(self):
        for worker in self.consumers.values():
            worker.stop()

    def relay_settings(self):
        return {"EVENT_TRANSPORT": "kafka"}

    def logs(self):
        return "\n".join(f"--- {name}\n{worker.log()}" for name, worker in self.consumers.items())


class DaprSidecarStack(DaprStack):
    transport = "dapr"

    def relay_settings(self):
        return {
            "EVENT_TRANSPORT": "dapr", "DAPR_HTTP_PORT": self.relay_sidecar.http_port,
            "DAPR_PUBSUB_NAME": publisher_component(),
        }


@pytest.fixture(scope="module", params=["kafka", "dapr"])
def stack(request, kafka_namespace, django_db_setup, django_db_blocker, tmp_path_factory):
    """One transport's whole event path, with the reminder scheduler (a Kafka consumer in both).
    A test of the Dapr stack alone says ``@DAPR_ONLY``."""
    if request.param == "dapr":
        require_daprd()
    log_dir = tmp_path_factory.mktemp(request.param)
    with Namespace(kafka_namespace, request.param) as namespace:
        if request.param == "kafka":
            started = KafkaStack(log_dir)
        else:
            started = DaprSidecarStack(log_dir, namespace.prefix, namespace.prefix)
        scheduler = Process(manage("run_scheduler"), log_dir / "scheduler.log", worker_environment()).start()
        try:
            with django_db_blocker.unblock():
                started.start()
            yield started
        finally:
            scheduler.stop()
            started.stop()
            print(f"--- {request.param} scheduler\n{scheduler.log()}")


@pytest.fixture
def relay(stack, settings):
    for name, value in stack.relay_settings().items():
        setattr(settings, name, value)
    with relay_thread() as running:
        yield running


def kafka_messages(base_topic, timeout=30.0):
    """Every message on a topic of the current namespace, up to its end now: dicts with raw value,
    key, headers (a list, in order) and coordinates."""
    name = topic_name(base_topic)
    consumer = Consumer(client_config(**{"group.id": f"test-reader-{uuid.uuid4().hex[:8]}"}))
    try:
        partitions = consumer.list_topics(name, timeout=timeout).topics[name].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(name, p), timeout=timeout)[1] for p in partitions}
        consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p, end in ends.items() if end > 0])
        messages = []

        def at_end():
            message = consumer.poll(0.2)
            if message is not None and not message.error():
                messages.append({
                    "partition": message.partition(), "offset": message.offset(), "key": message.key(),
                    "value": message.value(), "headers": message.headers() or [],
                })
            last = {}
            for seen in messages:
                last[seen["partition"]] = max(last.get(seen["partition"], -1), seen["offset"])
            return all(last.get(p, -1) >= end - 1 for p, end in ends.items() if end > 0)

        assert wait_for(at_end, timeout=timeout, interval=0), f"{name}: not read to its end"
        return messages
    finally:
        consumer.close()


def eventually(condition):
    return wait_for(condition, DELIVERED_TIMEOUT)


def keyed(messages, key):
    return [message for message in messages if message["key"] == key]


def produce_raw(base_topic, value, key, headers):
    """One message straight onto Kafka, as anyone with write access to the topic could send it."""
    producer = Producer(producer_config(**{"acks": "all"}))
    producer.produce(topic_name(base_topic), value=value, key=key, headers=headers)
    assert producer.flush(30) == 0


def processed(group, event_ids):
    return set(
        str(event_id) for event_id in ProcessedEvent.objects.filter(
            consumer_group=group_name(group), event_id__in=list(event_ids)
        ).values_list("event_id", flat=True)
    )


def test_every_consumer_gets_each_event_once_in_task_order_and_forgeries_are_dead_lettered_with_key_and_headers(
    stack, relay
):
    owner = User.objects.create_user(f"e2e-{stack.transport}", password="pw-123456")
    task = task_create(user=owner, context=API, title="write the report")
    for title in ("write the summary", "write the whole report"):
        task = task_update(task=task, context=API, title=title)
    task_complete(task=task, context=API)
    due = timezone.now() + timedelta(days=1)
    recurring = task_create(
        user=owner, context=API, title="water the plants", due_date=due, recurrence_rule="FREQ=DAILY"
    )
    task_complete(task=recurring, context=API)
    remind_at = timezone.now() + timedelta(seconds=2)
    reminded = task_create(
        user=owner, context=API, title="call back", due_date=remind_at + timedelta(hours=1), remind_at=remind_at
    )

    # The task events and their sync twins: every consumer of the topic gets each one it wants.
    outbox = {str(row.event_id): row for row in OutboxEvent.objects.all()}
    task_events = [row for row in outbox.values() if row.topic == TASK_EVENTS and row.key == str(task.id)]
    task_event_ids = {str(row.event_id) for row in task_events}
    completed_ids = {str(row.event_id) for row in outbox.values() if row.event_type == "task.completed"}
    sync_ids = {str(row.event_id) for row in outbox.values() if row.topic == TASK_UPDATES}
    assert len(task_event_ids) == 4 and len(completed_ids) == 2 and len(sync_ids) >= 7

    assert eventually(lambda: processed("audit-service", task_event_ids) == task_event_ids), stack.logs()
    assert eventually(lambda: processed("recurring-task-service", completed_ids) == completed_ids), stack.logs()
    assert eventually(lambda: processed("websocket-service", sync_ids) == sync_ids), stack.logs()
    open_plants = Task.objects.filter(user=owner, title="water the plants", completed=False)
    next_occurrence = eventually(open_plants.first)
    assert next_occurrence is not None, stack.logs()
    assert eventually(lambda: Notification.objects.filter(user=owner, task_id=reminded.id).exists()), stack.logs()
    due_ids = {str(row.event_id) for row in OutboxEvent.objects.filter(event_type="reminder.due")}
    assert len(due_ids) == 1 and processed("notification-service", due_ids) == due_ids

    # On Kafka: the outbox row's bytes, key = task id, the contract's headers and nothing else;
    # one task's events on one partition, in the order they were written.
    on_kafka = [m for m in kafka_messages(TASK_EVENTS) if m["key"] == str(task.id).encode()]
    assert [m["value"] for m in on_kafka] == [row.payload.encode() for row in sorted(task_events, key=lambda r: r.id)]
    # (In no particular order through Dapr: its Kafka component writes publish metadata from a Go map.)
    assert all(
        sorted(m["headers"]) == [("event_id", str(row.event_id).encode()), ("event_type", row.event_type.encode())]
        for m, row in zip(on_kafka, sorted(task_events, key=lambda r: r.id))
    ), [m["headers"] for m in on_kafka]
    assert len({m["partition"] for m in on_kafka}) == 1

    # The audit trail holds each event once, in task order, with its true Kafka coordinates.
    trail = list(AuditEntry.objects.filter(task_id=task.id).order_by("offset"))
    assert [entry.event_type for entry in trail] == ["task.created", "task.updated", "task.updated", "task.completed"]
    assert [(entry.partition, entry.offset) for entry in trail] == [(m["partition"], m["offset"]) for m in on_kafka]

    # A redelivered event (the same message again) changes nothing.
    first = on_kafka[0]
    produce_raw(TASK_EVENTS, first["value"], first["key"], first["headers"])
    marker = task_create(user=owner, context=API, title="after the duplicate")  # on the same partition: later
    marker_ids = {str(row.event_id) for row in OutboxEvent.objects.filter(key=str(marker.id), topic=TASK_EVENTS)}
    assert eventually(lambda: processed("audit-service", marker_ids) == marker_ids), stack.logs()
    assert AuditEntry.objects.filter(task_id=task.id).count() == 4

    # A forged task event: the audit service's handler refuses it, and it is dead-lettered with
    # its key, its headers and where it was read.
    forged = task_event(logged=False)
    forged_key = forged["data"]["task_id"].encode()
    forged_headers = [("event_type", b"task.created"), ("event_id", forged["event_id"].encode())]
    produce_raw(TASK_EVENTS, json.dumps(forged).encode(), forged_key, forged_headers)
    letters = eventually(lambda: keyed(kafka_messages(f"{TASK_EVENTS}.dlq"), forged_key))
    assert len(letters) == 1, stack.logs()
    letter = letters[0]
    original = next(m for m in kafka_messages(TASK_EVENTS) if m["key"] == forged_key)
    headers = dict((name, value.decode()) for name, value in letter["headers"])
    assert letter["value"] == original["value"]
    assert sorted(h for h in letter["headers"] if not h[0].startswith("dlq.")) == sorted(forged_headers)
    assert headers["dlq.original.topic"] == topic_name(TASK_EVENTS)
    assert (headers["dlq.original.partition"], headers["dlq.original.offset"]) == (
        str(original["partition"]), str(original["offset"])
    )
    assert headers["dlq.consumer.group"] == group_name("audit-service")
    assert headers["dlq.error.type"] == "ForgedEvent"
    assert not AuditEntry.objects.filter(event_id=forged["event_id"]).exists()
    print(
        f"\n[{stack.transport}] delivered: audit {len(task_event_ids)}/4, recurrence {len(completed_ids)}/2, "
        f"realtime {len(sync_ids)}/{len(sync_ids)}, notifications 1/1; order: one partition, audit offsets "
        f"{[entry.offset for entry in trail]}; duplicate: 0 new entries; dead letter: key kept, headers "
        f"{[name for name, _ in letter['headers']]}"
    )


@DAPR_ONLY  # the Kafka transport's broker outage: tests/events/test_relay.py
def test_in_dapr_mode_the_relay_waits_out_its_sidecar_and_then_publishes_each_event_once(stack, relay, caplog):
    owner = User.objects.create_user("e2e-outage", password="pw-123456")
    stack.relay_sidecar.kill()
    try:
        task = task_create(user=owner, context=API, title="written while the sidecar is down")
        task = task_update(task=task, context=API, title="and changed")
        rows = list(OutboxEvent.objects.filter(key=str(task.id)).order_by("id"))
        assert wait_for(lambda: "unreachable" in caplog.text, 30), caplog.text
        assert OutboxEvent.objects.filter(key=str(task.id), sent_at__isnull=False).count() == 0
    finally:
        stack.relay_sidecar.start()
    assert wait_for(lambda: not OutboxEvent.objects.filter(key=str(task.id), sent_at__isnull=True).exists(), 60)
    on_kafka = keyed(kafka_messages(TASK_EVENTS) + kafka_messages(TASK_UPDATES), str(task.id).encode())
    assert sorted(m["value"] for m in on_kafka) == sorted(row.payload.encode() for row in rows)  # each once
    trail = AuditEntry.objects.filter(task_id=task.id).order_by("offset")
    assert eventually(lambda: trail.count() == 2), stack.logs()
    assert [entry.event_type for entry in trail] == ["task.created", "task.updated"]


@DAPR_ONLY
@pytest.mark.parametrize("partitions", [3, 10])
def test_daprd_puts_each_key_on_the_partition_the_projects_producers_pick(stack, partitions):
    """2,000 task ids through daprd's publish API and through a producer of producer_config()."""
    name = topic_name(f"partitioner-{partitions}-{uuid.uuid4().hex[:6]}")
    admin = admin_client()
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[name].result(30)
    try:
        keys = [str(uuid.uuid4()) for _ in range(2000)]
        sidecar = DaprSidecar(port=stack.relay_sidecar.http_port)
        for key in keys:
            assert sidecar.publish(publisher_component(), name, b'"dapr"', key=key) is None
        sidecar.close()
        # The project's producers, and for contrast one with librdkafka's default (CRC32) partitioner.
        for label, producer in (("project", Producer(producer_config())), ("crc32", Producer(client_config()))):
            for key in keys:
                producer.produce(name, value=json.dumps(label).encode(), key=key)
                producer.poll(0)
            assert producer.flush(30) == 0
        placed = {}  # key -> {producer: partition}
        consumer = Consumer(client_config(**{"group.id": f"test-reader-{uuid.uuid4().hex[:8]}"}))
        consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in range(partitions)])
        try:
            def read_all():
                message = consumer.poll(0.2)
                if message is not None and not message.error():
                    placed.setdefault(message.key().decode(), {})[json.loads(message.value())] = message.partition()
                return sum(len(found) for found in placed.values()) == 3 * len(keys)

            assert wait_for(read_all, timeout=60, interval=0)
        finally:
            consumer.close()
        differing = [key for key, found in placed.items() if found["dapr"] != found["project"]]
        assert differing == [], f"{len(differing)} of {len(keys)} keys on another partition, e.g. {differing[:3]}"
        # The check can fail: librdkafka's default partitioner places about (n-1)/n of the keys elsewhere.
        elsewhere = sum(found["dapr"] != found["crc32"] for found in placed.values())
        assert elsewhere > len(keys) // 2
        print(f"\n[partitioner, {partitions} partitions] daprd vs fnv1a_random: 0 of {len(keys)} keys differ; "
              f"daprd vs librdkafka's default: {elsewhere} differ")
    finally:
        admin.delete_topics([name])[name].result(30)


@DAPR_ONLY
def test_in_dapr_mode_each_sidecar_loads_the_charts_resiliency_and_is_answered_at_its_config_call(stack, tmp_path):
    sidecars = [stack.relay_sidecar, *(pod.sidecar for pod in stack.pods.values())]
    resiliency = next(doc["metadata"]["name"] for doc in stack.documents if doc["kind"] == "Resiliency")
    for sidecar in sidecars:
        assert f"Loading Resiliency configuration: {resiliency}" in sidecar.log(), sidecar.log()
        assert "level=fatal" not in sidecar.log()
    # GET /dapr/config at each start is answered (no actors here), not 404.
    assert all("Not Found" not in pod.app.log() for pod in stack.pods.values()), stack.logs()
    # Why each document has a file of its own: standalone daprd skips a Resiliency that shares one.
    together = tmp_path / "together"
    together.mkdir()
    (together / "dapr.yaml").write_text(yaml.safe_dump_all(stack.documents, sort_keys=False))
    sidecar = Sidecar(stack.relay_sidecar.app_id, together, tmp_path / "together.log").start()
    try:
        assert "Loading Resiliency configuration" not in sidecar.log()
        assert f"Component loaded: {publisher_component()} (pubsub.kafka/v1)" in sidecar.log(), sidecar.log()
    finally:
        sidecar.stop()


@DAPR_ONLY
def test_in_dapr_mode_a_delivery_the_app_cannot_finish_is_retried_then_kept_in_the_subscriptions_dead_letter_topic(
    stack, relay
):
    """The realtime pod misrouted (its app serves another consumer): the route answers RETRY, Dapr
    retries per the chart's Resiliency (maxRetries 2 here), then writes the message as it was to the
    Subscription's deadLetterTopic."""
    pod = stack.pods["realtime"]
    pod.app.stop()
    answered_before = pod.app.log().count(RETRY_ANSWERED)
    pod.start_app(DAPR_CONSUMERS="audit")
    try:
        owner = User.objects.create_user("e2e-misrouted", password="pw-123456")
        task = task_create(user=owner, context=API, title="for a pod that serves another consumer")
        [row] = OutboxEvent.objects.filter(key=str(task.id), topic=TASK_UPDATES)
        letters = eventually(lambda: keyed(kafka_messages(f"{TASK_UPDATES}.dlq"), str(task.id).encode()))
        assert len(letters) == 1, stack.logs()
        assert letters[0]["value"] == row.payload.encode()
        assert not any(name.startswith("dlq.") for name, _ in letters[0]["headers"])  # Dapr's, not ours
        attempts = pod.app.log().count(RETRY_ANSWERED) - answered_before
        assert attempts == 1 + stack.resiliency_retries(), pod.app.log()
        assert not processed("websocket-service", {str(row.event_id)})
    finally:
        pod.app.stop()
        pod.start_app()

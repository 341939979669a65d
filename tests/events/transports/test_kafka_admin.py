"""The project talks to a real Kafka broker, and create_topics lays out the contract's topics."""

import json
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from django.core.management import call_command

from events.transports.kafka.admin import admin_client, delete_topics
from events.transports.kafka.config import client_config, producer_config
from events.topics import TOPICS, topic_name
from testing.waits import wait_for

CONTRACT_TOPICS = {"task-events", "reminders", "task-updates", "task-events.dlq", "reminders.dlq", "task-updates.dlq"}


def test_a_message_produced_to_the_broker_is_consumed_back(kafka_namespace):
    topic = topic_name("task-events")
    payload = {"event_id": str(uuid.uuid4()), "event_type": "test.roundtrip"}
    producer = Producer(producer_config())
    producer.produce(topic, key=payload["event_id"], value=json.dumps(payload))
    assert producer.flush(10) == 0

    consumer = Consumer(
        client_config(**{"group.id": f"{kafka_namespace}roundtrip", "auto.offset.reset": "earliest"})
    )
    consumer.subscribe([topic])
    received = None
    deadline = time.monotonic() + 30
    try:
        while received is None and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            if message.key().decode() == payload["event_id"]:
                received = json.loads(message.value())
    finally:
        consumer.close()
    assert received == payload


@pytest.fixture
def fresh_prefix(settings, kafka_namespace):
    prefix = f"test-topics-{uuid.uuid4().hex[:8]}-"
    settings.KAFKA_TOPIC_PREFIX = prefix
    yield prefix
    delete_topics([prefix + spec.base_name for spec in TOPICS])


def test_create_topics_creates_all_six_topics_with_three_partitions_then_changes_nothing(fresh_prefix, capsys):
    call_command("create_topics")
    first = capsys.readouterr().out

    admin = admin_client()

    def partitions_by_topic():
        # Metadata of brand-new topics can reach the client a moment after their creation.
        topics = admin.list_topics(timeout=10).topics
        found = {name[len(fresh_prefix):]: len(topic.partitions) for name, topic in topics.items() if name.startswith(fresh_prefix)}
        return found if set(found) == CONTRACT_TOPICS and all(found.values()) else None

    assert wait_for(partitions_by_topic, timeout=30) == dict.fromkeys(CONTRACT_TOPICS, 3)
    assert first.count(": created") == 6

    call_command("create_topics")
    second = capsys.readouterr().out
    assert second.count(": exists") == 6 and "created" not in second


def test_task_events_keeps_seven_days(fresh_prefix):
    from confluent_kafka.admin import ConfigResource

    call_command("create_topics")
    resource = ConfigResource(ConfigResource.Type.TOPIC, fresh_prefix + "task-events")
    admin = admin_client()

    def retention():
        # A topic's configs can lag its creation by a moment on a busy broker.
        try:
            return admin.describe_configs([resource])[resource].result(timeout=10)["retention.ms"].value
        except KafkaException:
            return None

    assert wait_for(retention, timeout=30) == str(7 * 24 * 3600 * 1000)


def test_topic_names_follow_the_configured_prefix(settings):
    settings.KAFKA_TOPIC_PREFIX = "staging."
    assert topic_name("reminders") == "staging.reminders"
    assert settings.KAFKA_TOPIC_PARTITIONS == 3


def topic_config(name, key):
    from confluent_kafka.admin import ConfigResource

    resource = ConfigResource(ConfigResource.Type.TOPIC, name)
    admin = admin_client()

    def value():
        # A topic's configs can lag its creation (or an alteration) by a moment on a busy broker.
        try:
            return admin.describe_configs([resource])[resource].result(timeout=10)[key].value
        except KafkaException:
            return None

    return value


THIRTY_DAYS_MS = str(30 * 24 * 3600 * 1000)


def test_dead_letter_topics_keep_thirty_days(fresh_prefix):
    call_command("create_topics")
    for base in ("task-events.dlq", "reminders.dlq", "task-updates.dlq"):
        assert wait_for(topic_config(fresh_prefix + base, "retention.ms"), timeout=30) == THIRTY_DAYS_MS, base


def test_create_topics_brings_an_existing_topics_config_in_line_and_leaves_its_other_configs_alone(
    fresh_prefix, capsys
):
    from confluent_kafka.admin import NewTopic

    # A dead-letter topic made by an older release: one day, and a setting of the operator's own.
    name = fresh_prefix + "reminders.dlq"
    admin = admin_client()
    config = {"retention.ms": str(24 * 3600 * 1000), "max.message.bytes": "2000000"}
    admin.create_topics([NewTopic(name, num_partitions=3, config=config)])[name].result(30)
    assert wait_for(topic_config(name, "retention.ms"), timeout=30) == config["retention.ms"]

    call_command("create_topics")
    output = capsys.readouterr().out

    assert f"{name}: set retention.ms={THIRTY_DAYS_MS}" in output
    assert wait_for(lambda: topic_config(name, "retention.ms")() == THIRTY_DAYS_MS or None, timeout=30)
    assert topic_config(name, "max.message.bytes")() == "2000000"

    call_command("create_topics")  # now in line: nothing more to change
    assert f"{name}: exists" in capsys.readouterr().out

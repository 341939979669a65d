"""Test-wide fixtures: every run gets its own Kafka topics and consumer groups.

The suite talks to the real Kafka, PostgreSQL and Redis that `make test` provisioned. A random
prefix keeps this run's topics and groups apart from a `make run` on the same broker and from
earlier runs; the topics are deleted again at the end.
"""

import os
import socket
import uuid

import pytest
from django.conf import settings

from events.transports.kafka.admin import create_topics, delete_topics
from events.topics import TOPICS, topic_name
from todo_project.celery import app as celery_app


@pytest.fixture(scope="session", autouse=True)
def kafka_namespace():
    prefix = f"test-{uuid.uuid4().hex[:8]}-"
    settings.KAFKA_TOPIC_PREFIX = prefix
    settings.KAFKA_GROUP_PREFIX = prefix
    # Processes that tests start (make run, workers) inherit the same namespace.
    os.environ["KAFKA_TOPIC_PREFIX"] = prefix
    os.environ["KAFKA_GROUP_PREFIX"] = prefix
    # Channel-layer groups ("user.<id>") too: parallel runs reuse user ids on the same Redis.
    settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = prefix
    os.environ["CHANNEL_LAYER_PREFIX"] = prefix
    create_topics()
    yield prefix
    delete_topics([topic_name(spec.base_name) for spec in TOPICS])


@pytest.fixture(autouse=True)
def rate_limit_counters(settings, monkeypatch, kafka_namespace):
    """Each test counts its sign-ins, registrations and reminders afresh, under the default limits.

    The suite registers many users from 127.0.0.1; counters carried over from earlier tests (or
    from a `make run` on the same Redis) would refuse them. A fresh key prefix per test, also for
    the servers a test starts, keeps the counters apart; old keys expire with their window.
    """
    prefix = f"{kafka_namespace}rl-{uuid.uuid4().hex[:8]}:"
    settings.RATELIMIT_CACHE_PREFIX = prefix
    monkeypatch.setenv("RATELIMIT_CACHE_PREFIX", prefix)
    return prefix


@pytest.fixture(scope="session", autouse=True)
def celery_queue():
    """This run's own celery queue: tasks sent without naming one (the e-mail sender's) reach only
    the workers this run starts, never another run's nor a `make run` on the same Redis."""
    queue = f"test-{uuid.uuid4().hex[:8]}"
    celery_app.conf.task_default_queue = queue
    os.environ["CELERY_TASK_DEFAULT_QUEUE"] = queue  # for the worker processes tests start
    yield queue
    with celery_app.connection_for_write() as connection:
        connection.default_channel.client.delete(queue)


@pytest.fixture
def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Fixtures shared by the tests of several apps: isolated_kafka, private_kafka, outbox_relay,
# relay_processes, workers, dapr_sidecar.
pytest_plugins = [
    "tests.events.kafka_helpers",
    "tests.kafka_broker",
    "tests.outbox_relay",
    "tests.processes",
    "tests.events.dapr_helpers",
]

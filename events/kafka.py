"""Connections to Kafka. The only module besides the consumer runtime that imports confluent_kafka.

Configuration comes from the KAFKA_* settings, so the same code talks to the local broker,
Strimzi inside a cluster, or Redpanda Cloud over SASL/TLS.
"""

import logging
import threading

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic
from django.conf import settings

from events.topics import TOPICS, topic_name

logger = logging.getLogger(__name__)


def client_config(**overrides):
    """librdkafka settings shared by producers, consumers and admin clients."""
    config = {
        "bootstrap.servers": settings.KAFKA_BOOTSTRAP_SERVERS,
        "security.protocol": settings.KAFKA_SECURITY_PROTOCOL,
        "client.id": "todo-platform",
    }
    if settings.KAFKA_SASL_MECHANISM:
        config.update(
            {
                "sasl.mechanism": settings.KAFKA_SASL_MECHANISM,
                "sasl.username": settings.KAFKA_SASL_USERNAME,
                "sasl.password": settings.KAFKA_SASL_PASSWORD,
            }
        )
    config.update(overrides)
    return config


def admin_client(**overrides):
    return AdminClient(client_config(**overrides))


# The admin clients of check_broker, one per configuration: a readiness probe every few seconds
# reuses its connection instead of building a client (threads, sockets, a login) each time.
_probe_clients = {}
_probe_clients_lock = threading.Lock()


def probe_client(timeout):
    """The long-lived admin client that check_broker asks, for the current settings."""
    # A short socket/connection budget keeps an unreachable broker from blocking a probe.
    config = client_config(**{"socket.connection.setup.timeout.ms": max(int(timeout * 1000), 1000)})
    key = tuple(sorted(config.items()))
    with _probe_clients_lock:
        if key not in _probe_clients:
            _probe_clients[key] = AdminClient(config)
        return _probe_clients[key]


def check_broker(timeout):
    """Raise KafkaException unless a broker answers a metadata request within ``timeout`` s."""
    metadata = probe_client(timeout).list_topics(timeout=timeout)
    if not metadata.brokers:
        raise KafkaException(f"no broker in the metadata from {settings.KAFKA_BOOTSTRAP_SERVERS}")


def create_topics(timeout=30.0):
    """Create every topic of the contract that is missing; return ``{name: "created" | "exists" | ...}``.

    Idempotent: existing topics are left alone, except that a topic with fewer partitions
    than configured is grown (Kafka cannot shrink one).
    """
    admin = admin_client()
    existing = admin.list_topics(timeout=timeout).topics
    wanted = settings.KAFKA_TOPIC_PARTITIONS
    outcome = {}
    to_create = []
    to_grow = []
    for spec in TOPICS:
        name = topic_name(spec.base_name)
        if name not in existing:
            to_create.append(
                NewTopic(
                    name,
                    num_partitions=wanted,
                    replication_factor=settings.KAFKA_TOPIC_REPLICATION_FACTOR,
                    config=spec.config,
                )
            )
        elif len(existing[name].partitions) < wanted:
            to_grow.append(NewPartitions(name, wanted))
        else:
            outcome[name] = "exists"
    for name, future in (admin.create_topics(to_create, request_timeout=timeout).items() if to_create else []):
        try:
            future.result()
            outcome[name] = "created"
        except KafkaException as exc:
            # Another process may have created it between our listing and our request.
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
            outcome[name] = "exists"
    for name, future in (admin.create_partitions(to_grow, request_timeout=timeout).items() if to_grow else []):
        future.result()
        outcome[name] = f"grown to {wanted} partitions"
    return outcome


def delete_topics(names, timeout=30.0):
    if not names:
        return
    admin = admin_client()  # keep the handle alive until every future has resolved
    for future in admin.delete_topics(list(names), request_timeout=timeout).values():
        future.result()

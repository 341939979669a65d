"""The one librdkafka configuration of the project: every client, producer, consumer and admin
client is built from ``client_config``, and every producer from ``producer_config``.

Configuration comes from the KAFKA_* settings, so the same code talks to the local broker,
Strimzi inside a cluster, or Redpanda Cloud over SASL/TLS.
"""

from django.conf import settings

# How a producer picks the partition of a keyed message. librdkafka's default (consistent_random,
# CRC32) and daprd's Kafka component (sarama's hash partitioner, FNV-1a) would put the same task id
# on different partitions depending on the path it took, and per-task order holds only within one
# partition. fnv1a_random is librdkafka's sarama-compatible choice (unkeyed messages: random).
# Changing it on a live deployment moves keys to other partitions: drain the topics first.
PARTITIONER = "fnv1a_random"


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
    if settings.KAFKA_SSL_CA_LOCATION:
        config["ssl.ca.location"] = settings.KAFKA_SSL_CA_LOCATION
    config.update(overrides)
    return config


def producer_config(**overrides):
    """Every producer's settings: acknowledged by all in-sync replicas, idempotent (no duplicates
    from its own retries, order kept through them), keys partitioned as daprd does. ``overrides``
    tune a producer's batching and timeouts; the partitioner is not theirs to change."""
    return {
        **client_config(**{"acks": "all", "enable.idempotence": True, **overrides}),
        "partitioner": PARTITIONER,
    }

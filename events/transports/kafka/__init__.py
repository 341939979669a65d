"""The Kafka transport: the only package that imports confluent_kafka.

``config``: the one client configuration and the one producer configuration (the FNV-1a
partitioner, acknowledged and idempotent writes); ``admin``: topics and the broker probe;
``consumer``: the poll loop adapter (messages in, offsets out) and the readers of a topic;
``producer``: the dead-letter writer, confirmed sends, and the outbox relay's publisher.

May import: confluent_kafka, ``events.core``, the contract modules (``events.topics``,
``events.schemas``), Django settings. Nothing above it (``events.consumer``, ``events.relay``).
"""

"""Kafka administration: the contract's topics (create, align, delete), their size limits, and
the broker probe of readiness."""

import threading

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions, NewTopic
from django.conf import settings

from events.topics import TOPICS, topic_name
from events.transports.kafka.config import client_config

TOPIC_LIMITS_TIMEOUT_SECONDS = 10

# KafkaException is what every function here raises; commands catch it as imported from here.


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


def topic_message_limit(base_names):
    """The smallest ``max.message.bytes`` of the topics ``base_names`` (KafkaException, TimeoutError
    or KeyError when Kafka does not answer)."""
    admin = admin_client()
    resources = [ConfigResource(ConfigResource.Type.TOPIC, topic_name(topic)) for topic in base_names]
    futures = admin.describe_configs(resources, request_timeout=TOPIC_LIMITS_TIMEOUT_SECONDS)
    return min(
        int(future.result(timeout=TOPIC_LIMITS_TIMEOUT_SECONDS)["max.message.bytes"].value)
        for future in futures.values()
    )


def create_topics(timeout=30.0):
    """Create every topic of the contract that is missing; return ``{name: "created" | "exists" | ...}``.

    Idempotent. An existing topic is brought in line with its spec, so that an upgrade applies it:
    one with fewer partitions than configured is grown (Kafka cannot shrink one), and a config
    the spec sets (e.g. retention.ms) that differs is changed by an incremental alter, which
    leaves the topic's other configs alone.
    """
    admin = admin_client()
    existing = admin.list_topics(timeout=timeout).topics
    wanted = settings.KAFKA_TOPIC_PARTITIONS
    changes = {}  # name -> what was done to it
    to_create = []
    to_grow = []
    to_configure = {}  # name -> the spec's config, for the topics that exist
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
            continue
        if len(existing[name].partitions) < wanted:
            to_grow.append(NewPartitions(name, wanted))
        if spec.config:
            to_configure[name] = spec.config
    for name, future in (admin.create_topics(to_create, request_timeout=timeout).items() if to_create else []):
        try:
            future.result()
            changes.setdefault(name, []).append("created")
        except KafkaException as exc:
            # Another process may have created it between our listing and our request.
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
    for name, future in (admin.create_partitions(to_grow, request_timeout=timeout).items() if to_grow else []):
        future.result()
        changes.setdefault(name, []).append(f"grown to {wanted} partitions")
    for name, altered in _align_configs(admin, to_configure, timeout).items():
        configs = ", ".join(f"{key}={value}" for key, value in sorted(altered.items()))
        changes.setdefault(name, []).append(f"set {configs}")
    names = [topic_name(spec.base_name) for spec in TOPICS]
    return {name: "; ".join(changes.get(name, ["exists"])) for name in names}


def _align_configs(admin, wanted, timeout):
    """Set, on existing topics, the configs of ``wanted`` ({name: {key: value}}) whose value differs;
    return {name: {key: value}} of those changed."""
    if not wanted:
        return {}
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in wanted]
    differing = {}
    for resource, future in admin.describe_configs(resources, request_timeout=timeout).items():
        current = future.result()
        config = wanted[resource.name]
        changed = {key: value for key, value in config.items() if key not in current or current[key].value != value}
        if changed:
            differing[resource.name] = changed
    if not differing:
        return {}
    alterations = [
        ConfigResource(
            ConfigResource.Type.TOPIC,
            name,
            incremental_configs=[
                ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET) for key, value in changed.items()
            ],
        )
        for name, changed in differing.items()
    ]
    for future in admin.incremental_alter_configs(alterations, request_timeout=timeout).values():
        future.result()
    return differing


def delete_topics(names, timeout=30.0):
    if not names:
        return
    admin = admin_client()  # keep the handle alive until every future has resolved
    for future in admin.delete_topics(list(names), request_timeout=timeout).values():
        future.result()

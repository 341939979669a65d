"""OUTBOX_PUBLISHER=debezium: Debezium's PostgreSQL connector on a Kafka Connect worker publishes the outbox.

``relay_outbox`` is one leader at a time; when one relay is not enough, Debezium reads the same
outbox table through logical replication (a replication slot on the ``todo_outbox`` publication,
migration 0005) and its outbox event router produces each inserted row exactly as the relay
would: same value bytes, key, headers and topic, and, through the worker's FNV-1a partitioner,
the same partition (helm/todo-platform/files/debezium-outbox.yaml says how, setting by setting).

Bookkeeping moves out of the table: Connect commits the WAL position it has published (its
offsets topic, and the slot's confirmed position in PostgreSQL), so nobody sets ``sent_at`` and
the purge keeps rows by age instead (events.outbox.purge_sent). The lag is the WAL the slot holds
that the connector has not confirmed (``replication_slot``), reported by ``relay_outbox``, which
publishes nothing in this mode.

This module turns that shared file and the settings into the local worker's properties and the
connector's configuration (``run_connect``); the chart reads the same file.
"""

import functools
import logging
from pathlib import Path

import yaml
from django.conf import settings
from django.db import DatabaseError, connection
from prometheus_client import Gauge

from events.topics import group_name, topic_name

logger = logging.getLogger(__name__)

CONFIG_FILE = Path(settings.BASE_DIR) / "helm" / "todo-platform" / "files" / "debezium-outbox.yaml"
CONNECTOR_NAME = "todo-outbox"
# The worker's classpath: scripts/connect.sh jars puts Connect, Debezium and our partitioner there.
CONNECT_LIBS = Path(settings.BASE_DIR) / ".cache" / "connect" / "libs"
STRING_CONVERTER = "org.apache.kafka.connect.storage.StringConverter"
# The Kafka clients of a Connect worker: its own (group membership, internal topics) and those it
# makes for the connectors' tasks; each needs the security settings.
WORKER_CLIENTS = ("", "producer.", "consumer.", "admin.")

def shared_config():
    return yaml.safe_load(CONFIG_FILE.read_text())


def connector_config():
    """The connector's configuration for this deployment's database, topic prefix and slot."""
    database = settings.DATABASES["default"]
    return {
        **shared_config()["connector"],
        "database.hostname": database["HOST"] or "127.0.0.1",
        "database.port": str(database["PORT"] or 5432),
        "database.user": database["USER"],
        "database.password": database["PASSWORD"],
        "database.dbname": database["NAME"],
        "slot.name": settings.DEBEZIUM_SLOT_NAME,
        # Debezium's name for this source (in its offsets); the router replaces every topic name.
        "topic.prefix": topic_name("outbox"),
        # The router's topic: KAFKA_TOPIC_PREFIX + the row's topic column (a group of its regex).
        "transforms.outbox.route.topic.replacement": topic_name("${routedByValue}"),
    }


def worker_properties(rest_port):
    """The local worker's configuration (distributed mode, its state in topics of this prefix)."""
    replication = str(settings.KAFKA_TOPIC_REPLICATION_FACTOR)  # -1: the broker's default
    return {
        "bootstrap.servers": settings.KAFKA_BOOTSTRAP_SERVERS,
        "group.id": group_name("todo-connect"),
        "config.storage.topic": topic_name("todo-connect.configs"),
        "offset.storage.topic": topic_name("todo-connect.offsets"),
        "status.storage.topic": topic_name("todo-connect.status"),
        "config.storage.replication.factor": replication,
        "offset.storage.replication.factor": replication,
        "status.storage.replication.factor": replication,
        "key.converter": STRING_CONVERTER,
        "value.converter": STRING_CONVERTER,
        "listeners": f"http://127.0.0.1:{rest_port}",
        "rest.advertised.host.name": "127.0.0.1",
        "rest.advertised.port": str(rest_port),
        # Every plugin on the classpath (Connect's and Debezium's jars) has ServiceLoader manifests:
        # no scanning of the jars at start.
        "plugin.discovery": "service_load",
        **{client + key: value for client in WORKER_CLIENTS for key, value in _client_security().items()},
        **shared_config()["worker"],
    }


def _client_security():
    """The KAFKA_* security settings in the Java client's terms."""
    config = {"security.protocol": settings.KAFKA_SECURITY_PROTOCOL}
    if settings.KAFKA_SASL_MECHANISM:
        module = (
            "org.apache.kafka.common.security.plain.PlainLoginModule"
            if settings.KAFKA_SASL_MECHANISM == "PLAIN"
            else "org.apache.kafka.common.security.scram.ScramLoginModule"
        )
        config["sasl.mechanism"] = settings.KAFKA_SASL_MECHANISM
        config["sasl.jaas.config"] = (
            f'{module} required username="{_jaas_quote(settings.KAFKA_SASL_USERNAME)}" '
            f'password="{_jaas_quote(settings.KAFKA_SASL_PASSWORD)}";'
        )
    if settings.KAFKA_SSL_CA_LOCATION:
        config["ssl.truststore.type"] = "PEM"
        config["ssl.truststore.location"] = settings.KAFKA_SSL_CA_LOCATION
    return config


def _jaas_quote(value):
    return value.replace("\\", "\\\\").replace('"', '\\"')


def properties_text(properties):
    """``properties`` in java.util.Properties syntax."""

    def escape(text):
        return text.replace("\\", "\\\\").replace("\n", "\\n")

    return "".join(f"{escape(key)}={escape(value)}\n" for key, value in properties.items())


def replication_slot():
    """(active, lag in bytes) of the connector's replication slot, or None while it does not exist."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT active, pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint"
            " FROM pg_replication_slots WHERE slot_name = %s",
            [settings.DEBEZIUM_SLOT_NAME],
        )
        row = cursor.fetchone()
    return None if row is None else (row[0], row[1] or 0)


@functools.cache
def _slot_gauges():
    """The gauges of the slot, made by the one process that reports them (relay_outbox in this mode)."""
    lag = Gauge(
        "outbox_replication_slot_lag_bytes",
        "WAL written since the position the Debezium connector last confirmed (OUTBOX_PUBLISHER=debezium); "
        "-1 while its replication slot does not exist.",
    )
    active = Gauge("outbox_replication_slot_active", "1 while a connector streams from the outbox's replication slot.")
    return lag, active


def report_replication_slot():
    """Set the slot gauges; return what replication_slot() found."""
    lag, active = _slot_gauges()
    slot = replication_slot()
    active.set(1 if slot and slot[0] else 0)
    lag.set(slot[1] if slot else -1)
    return slot


SLOT_CHECK_INTERVAL_SECONDS = 10


def watch_replication_slot(stop, interval=SLOT_CHECK_INTERVAL_SECONDS):
    """relay_outbox's work when Debezium publishes: keep the slot gauges current until ``stop`` is set,
    and say when the slot goes missing or idle (nothing publishes then) and when it is back."""
    logger.info(
        "relay: not needed: OUTBOX_PUBLISHER=debezium, Kafka Connect publishes the outbox; reporting the lag "
        "of replication slot %s", settings.DEBEZIUM_SLOT_NAME,
    )
    state = "active"
    while not stop.is_set():
        try:
            slot = report_replication_slot()
            now = "missing" if slot is None else "active" if slot[0] else "inactive"
        except DatabaseError as exc:
            now = f"unreadable ({exc})"
            connection.close()
        if now != state:
            if now == "active":
                logger.info("relay: replication slot %s is streaming again", settings.DEBEZIUM_SLOT_NAME)
            else:
                logger.warning("relay: replication slot %s is %s: nothing publishes the outbox until the "
                               "connector streams from it", settings.DEBEZIUM_SLOT_NAME, now)
            state = now
        stop.wait(interval)

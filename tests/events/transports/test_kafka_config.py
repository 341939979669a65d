"""Every producer the project builds partitions keys with FNV-1a, like daprd (no broker needed).

daprd's Kafka component hashes keys with sarama's FNV-1a; librdkafka's default is CRC32. Were the
two to differ, one task's events would land on different partitions depending on the path they
took (relay, Dapr, replay), and per-task order holds only within one partition.
"""

import ast
from pathlib import Path

import pytest
from django.conf import settings

from events.transports.kafka.config import PARTITIONER, client_config, producer_config
from events.transports.kafka.producer import relay_producer_config

ROOT = Path(settings.BASE_DIR)
KAFKA_TRANSPORT = ROOT / "events" / "transports" / "kafka"
# What builds a producer's configuration: the one function, and the relay's use of it.
PRODUCER_CONFIGS = {"producer_config", "relay_producer_config"}


def production_modules():
    """The project's own Python files that run in production (not tests, test support, benchmarks)."""
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).parts
        if parts[0] in {"tests", "testing", "bench", "node_modules"} or parts[0].startswith(".") or "migrations" in parts:
            continue
        yield path, ast.parse(path.read_text(), str(path))


def test_the_partitioner_is_fnv1a_the_hash_of_daprds_sarama_partitioner():
    assert PARTITIONER == "fnv1a_random"


@pytest.mark.parametrize(
    "build",
    [
        lambda: producer_config(),
        lambda: producer_config(**{"linger.ms": 0}),
        lambda: producer_config(partitioner="consistent_random"),  # not a producer's to change
        lambda: relay_producer_config(),
        lambda: relay_producer_config(topic_message_limit=2000),
    ],
    ids=["default", "dead-letters", "override-refused", "relay", "relay-with-a-topic-limit"],
)
def test_every_producer_configuration_carries_the_partitioner_and_acknowledged_idempotent_writes(build):
    # Built inside the test: the settings a test runs under (its broker address) are not collection's.
    config = build()
    assert config["partitioner"] == PARTITIONER
    assert (config["acks"], config["enable.idempotence"]) == ("all", True)
    assert config["bootstrap.servers"] == settings.KAFKA_BOOTSTRAP_SERVERS


def test_consumers_and_admin_clients_get_no_producer_property():
    assert "partitioner" not in client_config()


def test_every_producer_in_production_code_is_built_in_the_kafka_transport_from_the_one_configuration():
    producers = []
    for path, tree in production_modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "Producer":
                built_from = node.args[0].func.id if node.args and isinstance(node.args[0], ast.Call) else None
                producers.append((path.relative_to(ROOT).as_posix(), built_from))
    assert producers, "no producer found: the scan is broken"
    assert all(path.startswith("events/transports/kafka/") for path, _ in producers), producers
    assert {built_from for _, built_from in producers} <= PRODUCER_CONFIGS, producers


def test_only_the_kafka_transport_imports_confluent_kafka():
    importers = set()
    for path, tree in production_modules():
        for node in ast.walk(tree):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            if any(name.split(".")[0] == "confluent_kafka" for name in names):
                importers.add(path.relative_to(ROOT).as_posix())
    assert importers and all(path.startswith("events/transports/kafka/") for path in importers), sorted(importers)


def test_the_event_core_imports_no_transport_registry_or_loop():
    for path in (ROOT / "events" / "core").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith(
                    ("events.transports", "events.registry", "events.consumer", "events.relay", "events.replay")
                ), f"{path.name} imports {node.module}"

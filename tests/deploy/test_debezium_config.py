"""OUTBOX_PUBLISHER=debezium without a Connect worker: the settings, the worker's and the connector's
configuration as events/debezium.py derives them, and run_connect when the relay publishes."""

import os
import subprocess
import sys
import time
from pathlib import Path

from events.debezium import connector_config, properties_text, shared_config, worker_properties

REPO = Path(__file__).resolve().parents[2]


def test_the_worker_keeps_its_state_under_the_prefix_and_partitions_like_every_other_producer(settings):
    settings.KAFKA_TOPIC_PREFIX, settings.KAFKA_GROUP_PREFIX = "staging.", "staging-"
    worker = worker_properties(18083)
    assert (worker["config.storage.topic"], worker["offset.storage.topic"], worker["status.storage.topic"]) == (
        "staging.todo-connect.configs", "staging.todo-connect.offsets", "staging.todo-connect.status")
    assert worker["group.id"] == "staging-todo-connect"
    assert worker["listeners"] == "http://127.0.0.1:18083"
    assert worker["bootstrap.servers"] == settings.KAFKA_BOOTSTRAP_SERVERS
    assert worker["producer.partitioner.class"] == "todo.connect.Fnv1aPartitioner"
    assert shared_config()["worker"].items() <= worker.items()


def test_every_client_of_the_worker_speaks_the_kafka_security_settings(settings):
    settings.KAFKA_SECURITY_PROTOCOL, settings.KAFKA_SASL_MECHANISM = "SASL_SSL", "SCRAM-SHA-256"
    settings.KAFKA_SASL_USERNAME, settings.KAFKA_SASL_PASSWORD = "todo", 'pa"ss\\word'
    settings.KAFKA_SSL_CA_LOCATION = "/etc/kafka-ca/ca.crt"
    worker = worker_properties(8083)
    for client in ("", "producer.", "consumer.", "admin."):
        assert worker[client + "security.protocol"] == "SASL_SSL"
        assert worker[client + "sasl.mechanism"] == "SCRAM-SHA-256"
        assert worker[client + "sasl.jaas.config"] == (
            'org.apache.kafka.common.security.scram.ScramLoginModule required username="todo" '
            'password="pa\\"ss\\\\word";'
        )
        assert (worker[client + "ssl.truststore.type"], worker[client + "ssl.truststore.location"]) == (
            "PEM", "/etc/kafka-ca/ca.crt")
    # java.util.Properties reads a backslash as an escape: the file doubles it.
    assert 'password="pa\\\\"ss\\\\\\\\word";' in properties_text(worker)


def test_the_connector_reads_this_database_and_routes_to_this_prefix(settings):
    settings.KAFKA_TOPIC_PREFIX, settings.DEBEZIUM_SLOT_NAME = "staging.", "staging_outbox"
    database = settings.DATABASES["default"]
    config = connector_config()
    assert config["transforms.outbox.route.topic.replacement"] == "staging.${routedByValue}"
    assert config["slot.name"] == "staging_outbox"
    assert (config["database.dbname"], config["database.user"], config["database.password"]) == (
        database["NAME"], database["USER"], database["PASSWORD"])
    assert config["publication.name"] == "todo_outbox"  # events migration 0005


def test_an_unknown_publisher_is_refused_at_start():
    env = {**os.environ, "OUTBOX_PUBLISHER": "kafka-connect", "DJANGO_SETTINGS_MODULE": "todo_project.settings"}
    result = subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "OUTBOX_PUBLISHER='kafka-connect': use relay or debezium" in result.stderr


def test_run_connect_waits_doing_nothing_while_the_relay_publishes(tmp_path):
    log = tmp_path / "connect.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "manage.py", "run_connect"], cwd=REPO,
                                   env={**os.environ, "OUTBOX_PUBLISHER": "relay"}, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "waiting until stopped" not in log.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        # It became a process that holds nothing: no JVM, no Python, no port.
        deadline = time.monotonic() + 10
        while Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")[0] != b"sleep":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert "not needed: OUTBOX_PUBLISHER=relay" in log.read_text()
    finally:
        process.terminate()
        process.wait(30)

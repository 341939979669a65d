"""OUTBOX_PUBLISHER=debezium end to end: Debezium's outbox event router on a real Kafka Connect worker
(``manage.py run_connect``) reading a real PostgreSQL through logical replication, against the
shared Kafka. Each check compares with what relay_outbox does with the same rows.
"""

import json
import time
import uuid
from collections import Counter, defaultdict

import httpx
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic

from events.transports.kafka.admin import admin_client
from events.transports.kafka.config import client_config
from testing.debezium import (
    Stack, event_ids_of, free_port, outbox_rows, read_topics, run_workload,
)
from testing.waits import wait_until

BASE_TOPICS = ("task-events", "reminders", "task-updates")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, kafka_namespace):
    stack = Stack(tmp_path_factory.mktemp("debezium"), f"{kafka_namespace}dbz-")
    try:
        stack.start()
        # Rows a relay left behind when the publisher was switched: one it sent, one it did not.
        with stack.postgres.connect() as conn:
            for sent, event_id in ((True, SENT_BEFORE), (False, UNSENT_BEFORE)):
                conn.execute(
                    "INSERT INTO events_outboxevent (event_id, event_type, topic, key, payload, created_at, sent_at,"
                    " park_reason) VALUES (%s, 'sync.task_changed', 'task-updates', %s, %s, now(),"
                    " CASE WHEN %s THEN now() END, '')",
                    [event_id, str(uuid.uuid4()), json.dumps({"event_id": event_id}), sent],
                )
        stack.worker = stack.connect_worker()
        stack.worker.wait_running()
        yield stack
    finally:
        stack.stop()
        stack.delete_topics()


SENT_BEFORE, UNSENT_BEFORE = str(uuid.uuid4()), str(uuid.uuid4())


def topics_of(stack, prefix=None):
    return [(prefix or stack.prefix) + base for base in BASE_TOPICS]


def messages_of(stack, event_ids, prefix=None, timeout=120):
    """Every message on the three topics until each of ``event_ids`` arrived."""
    wanted = set(event_ids)
    return read_topics(topics_of(stack, prefix), lambda got: wanted <= event_ids_of(got), timeout)


def test_the_first_start_publishes_what_a_relay_left_unsent_and_nothing_it_sent(stack):
    messages = messages_of(stack, {UNSENT_BEFORE})
    assert Counter(event_ids_of(messages)) == Counter({UNSENT_BEFORE: 1})
    assert SENT_BEFORE not in event_ids_of(messages)


def test_the_topics_carry_byte_for_byte_what_relay_outbox_produces(stack):
    run_workload(stack, tasks=12, rounds=2)
    rows = outbox_rows(stack)
    del rows[SENT_BEFORE], rows[UNSENT_BEFORE]
    by_debezium = messages_of(stack, rows)
    relay_prefix = f"{stack.prefix}relay-"
    stack.manage("create_topics", prefix=relay_prefix)
    relay = stack.spawn("relay", "relay_outbox", prefix=relay_prefix, OUTBOX_PUBLISHER="relay")
    try:
        by_relay = messages_of(stack, rows, prefix=relay_prefix)
    finally:
        relay.stop()
        stack.delete_topics(relay_prefix)

    def wire(messages, prefix):
        return {
            message.header("event_id").decode(): (message.topic.removeprefix(prefix), message.key, message.value,
                                                  message.headers)
            for message in messages if message.header("event_id").decode() in rows
        }

    debezium, relayed = wire(by_debezium, stack.prefix), wire(by_relay, relay_prefix)
    assert len(debezium) == len(rows) == len(relayed) >= 12 * 2 * 3  # 3 changes of 12 tasks, 2+ events each
    assert {topic for topic, *_ in debezium.values()} == set(BASE_TOPICS)
    for event_id, (topic, key, value, headers) in debezium.items():
        assert (topic, key, headers) == relayed[event_id][:2] + relayed[event_id][3:], event_id
        assert value == relayed[event_id][2], (value, relayed[event_id][2])
    for event_id, (topic, key, payload, event_type) in rows.items():
        assert debezium[event_id] == (
            topic, key.encode(), payload.encode(), (("event_type", event_type.encode()), ("event_id", event_id.encode()))
        )
    assert any(not value.isascii() for _, _, value, _ in debezium.values())  # the bytes, not an ASCII re-encoding
    # Exactly once each (no faults here): Debezium adds nothing either, no tombstones, no other topics.
    assert len([m for m in by_debezium if m.header("event_id").decode() in rows]) == len(rows)


def test_a_key_lands_on_the_partition_of_librdkafkas_fnv1a_random_as_daprds_sarama_picks_it(stack):
    """2,000 random task ids through Debezium, and through confluent-kafka with each partitioner, on
    topics of 12 partitions: Debezium's partitions are fnv1a_random's for every key; murmur2, Kafka's
    Java default, would differ for most keys (so the comparison can tell them apart)."""
    keys = [str(uuid.uuid4()) for _ in range(2000)]
    names = {name: f"{stack.prefix}fnv-{name}" for name in ("debezium", "fnv1a_random", "murmur2_random")}
    admin = admin_client()  # alive until every future resolved
    for future in admin.create_topics([NewTopic(n, num_partitions=12) for n in names.values()]).values():
        future.result()
    for partitioner in ("fnv1a_random", "murmur2_random"):
        producer = Producer(client_config(partitioner=partitioner))
        for key in keys:
            producer.produce(names[partitioner], key=key.encode(), value=b"{}")
        assert producer.flush(60) == 0
    with stack.postgres.connect() as conn, conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO events_outboxevent (event_id, event_type, topic, key, payload, created_at, park_reason)"
            " VALUES (%s, 'sync.task_changed', 'fnv-debezium', %s, '{}', now(), '')",
            [(str(uuid.uuid4()), key) for key in keys],
        )

    def partitions(name):
        messages = read_topics([name], lambda got: len(got) >= len(keys))
        return {message.key.decode(): message.partition for message in messages}

    debezium, fnv1a, murmur2 = (partitions(names[n]) for n in ("debezium", "fnv1a_random", "murmur2_random"))
    assert len(debezium) == len(keys) and len(set(debezium.values())) == 12
    assert debezium == fnv1a
    assert sum(debezium[key] != murmur2[key] for key in keys) > len(keys) // 2


def task_event_versions(messages):
    """{task id: [(partition, version), ...]} of task-events, in offset order, first copy of each event."""
    seen, versions = set(), defaultdict(list)
    for message in sorted(messages, key=lambda m: (m.partition, m.offset)):
        event = json.loads(message.value)
        if not message.topic.endswith("task-events") or event["event_id"] in seen:
            continue
        seen.add(event["event_id"])
        versions[message.key.decode()].append((message.partition, event["data"]["version"]))
    return versions


def assert_per_task_order(messages):
    versions = task_event_versions(messages)
    assert versions
    for key, seq in versions.items():
        assert len({partition for partition, _ in seq}) == 1, f"task {key} on several partitions: {seq}"
        numbers = [version for _, version in seq]
        assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers), f"task {key} out of order: {numbers}"


def audit_count(stack):
    return stack.postgres.query("SELECT count(*) FROM audit_auditentry")[0][0]


def task_event_ids(stack):
    return {str(event_id) for (event_id,) in stack.postgres.query(
        "SELECT event_id FROM events_outboxevent WHERE topic = 'task-events'")}


def test_per_task_order_holds_and_the_audit_trail_fills_from_debeziums_output(stack):
    audit = stack.spawn("audit", "run_consumer", "audit")
    try:
        run_workload(stack, tasks=30, rounds=4)
        wanted = task_event_ids(stack)
        wait_until(lambda: audit_count(stack) >= len(wanted), 180, f"{len(wanted)} audit entries")
        assert audit_count(stack) == len(wanted)
        recorded = {str(event_id) for (event_id,) in stack.postgres.query("SELECT event_id FROM audit_auditentry")}
        assert recorded == wanted
        assert_per_task_order(messages_of(stack, wanted))
    finally:
        audit.stop()


@pytest.mark.timeout(900)
def test_nothing_is_lost_when_connect_is_killed_under_load_and_duplicates_do_no_harm(stack, capsys):
    audit = stack.spawn("audit-kill", "run_consumer", "audit")
    try:
        before = task_event_ids(stack)
        workload = run_workload(stack, tasks=40, rounds=6, pause=0.02, wait=False)
        wait_until(lambda: len(task_event_ids(stack) - before) > 100, 120, "a first part of the load")
        stack.worker.kill()
        killed_at = time.monotonic()
        time.sleep(1)  # a gap with the load going on and nothing publishing: that is the fault
        stack.worker = stack.connect_worker()
        stack.worker.wait_running()
        back_after = time.monotonic() - killed_at
        wait_until(lambda: workload.process.poll() is not None, 300, "the end of the load")
        assert workload.process.returncode == 0, workload.log()
        rows = outbox_rows(stack)
        messages = messages_of(stack, set(rows) - {SENT_BEFORE}, timeout=240)
        copies = Counter(m.header("event_id").decode() for m in messages)
        assert set(copies) == set(rows) - {SENT_BEFORE}  # every committed event is on its topic
        duplicates = sum(copies.values()) - len(copies)
        payloads = defaultdict(set)
        for message in messages:
            payloads[message.header("event_id").decode()].add(message.value)
        assert all(len(values) == 1 for values in payloads.values())  # a re-sent copy is the same bytes
        assert_per_task_order(messages)
        wanted = task_event_ids(stack)
        wait_until(lambda: audit_count(stack) >= len(wanted), 180, f"{len(wanted)} audit entries")
        assert audit_count(stack) == len(wanted)  # each event once in the audit trail, re-sent copies skipped
        with capsys.disabled():
            print(f"\nConnect killed (-9) under load: {len(copies)} events, {duplicates} duplicates "
                  f"({sum(n > 1 for n in copies.values())} events sent twice), connector running again after "
                  f"{back_after:.1f} s, audit entries {audit_count(stack)} = task events {len(wanted)}")
    finally:
        audit.stop()


def test_relay_outbox_publishes_nothing_and_reports_the_slots_lag(stack):
    port = free_port()
    run_workload(stack, tasks=1, rounds=0)
    unsent = stack.postgres.query("SELECT count(*) FROM events_outboxevent WHERE sent_at IS NULL")
    relay = stack.spawn("relay-debezium", "relay_outbox", METRICS_PORT=str(port), METRICS_ADDR="127.0.0.1",
                        LOG_LEVEL="INFO")
    try:
        metrics = wait_until(lambda: _get(f"http://127.0.0.1:{port}/metrics"), 60, "the relay's /metrics")
        lag = wait_until(lambda: _gauge(_get(f"http://127.0.0.1:{port}/metrics"), "outbox_replication_slot_lag_bytes"),
                       60, "the slot's lag")
        assert lag is not None and lag >= 0
        assert _gauge(_get(f"http://127.0.0.1:{port}/metrics"), "outbox_replication_slot_active") == 1
        assert "outbox_events_relayed_total{" not in metrics
        assert "not needed" in relay.log()
        # The monitor has run (the gauges are set): a relay in charge would have published by now.
        assert stack.postgres.query("SELECT count(*) FROM events_outboxevent WHERE sent_at IS NULL") == unsent
    finally:
        relay.stop()


def _get(url):
    try:
        return httpx.get(url, timeout=5).text
    except httpx.HTTPError:
        return None


def _gauge(text, name):
    for line in (text or "").splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def test_the_purge_deletes_rows_by_age_and_debezium_ignores_the_deletes(stack):
    with stack.postgres.connect() as conn:
        conn.execute("UPDATE events_outboxevent SET created_at = now() - interval '2 days'")
    run_workload(stack, tasks=2, rounds=1)
    old = stack.postgres.query("SELECT count(*) FROM events_outboxevent WHERE created_at < now() - interval '1 day'")
    fresh = stack.postgres.query("SELECT count(*) FROM events_outboxevent WHERE created_at > now() - interval '1 hour'")
    purged = stack.manage("shell", "-v", "0", "-c", "from events.outbox import purge_sent; print(purge_sent())")
    remaining = stack.postgres.query("SELECT count(*) FROM events_outboxevent")
    assert int(purged) == old[0][0] > 0 and remaining == fresh
    # The deletes reached the slot and were published nowhere: no tombstone, no message without a key.
    marker = run_workload(stack, tasks=1, rounds=0)
    assert marker.strip() == "done"
    newest = set(outbox_rows(stack))
    messages = messages_of(stack, newest)
    assert all(message.value is not None and message.key for message in messages)

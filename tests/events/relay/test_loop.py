"""relay_outbox publishes committed outbox rows to Kafka: nothing lost, nothing reordered per task."""

import time
import uuid
from collections import defaultdict

import psycopg
import pytest
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from prometheus_client import REGISTRY

from events.transports.kafka.admin import admin_client
from events.models import OutboxEvent
from events.outbox import emit
from events.topics import topic_name
from tasks import services
from tasks.events import EventContext
from tasks.models import User
from testing.factories import sync_task_changed
from testing.kafka import read_events
from testing.outbox import outbox_rows, relay_thread
from testing.waits import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

CONTEXT = EventContext(source="todo-api", correlation_id="relay-test")


def unsent():
    return OutboxEvent.objects.filter(sent_at__isnull=True).count()


def test_a_committed_row_reaches_kafka_with_key_headers_and_exact_payload_then_is_marked_sent(outbox_relay):
    task_id = str(uuid.uuid4())
    with transaction.atomic():
        row = emit(sync_task_changed(task_id), key=task_id)
    [message] = read_events([row.event_id], topics=["task-updates"])
    assert message.key == task_id
    assert message.headers == {"event_type": "sync.task_changed", "event_id": str(row.event_id)}
    assert message.event == sync_task_changed(task_id) | {"event_id": str(row.event_id), "timestamp": message.event["timestamp"]}
    wait_until(lambda: OutboxEvent.objects.get(pk=row.pk).sent_at is not None, 30, "row marked sent")


def test_the_relay_wakes_at_commit_not_at_its_polling_interval(kafka_namespace):
    with relay_thread(poll_interval=60):
        time.sleep(0)  # let the thread start; the first round below is what is timed
        wait_until(lambda: unsent() == 0, 30, "relay idle")
        latencies = []
        for _ in range(5):
            task_id = str(uuid.uuid4())
            with transaction.atomic():
                row = emit(sync_task_changed(task_id), key=task_id)
            committed = time.monotonic()
            wait_until(lambda: OutboxEvent.objects.filter(pk=row.pk, sent_at__isnull=False).exists(), 30, "sent")
            latencies.append(time.monotonic() - committed)
    # Far below the 60 s poll: NOTIFY woke the relay (generous bound for a busy 2-core machine).
    assert max(latencies) < 5, latencies


# ------------------------------------------------------------------ pipelined rounds


def test_rows_of_a_task_spanning_many_pipelined_rounds_reach_kafka_in_order_once_each(kafka_namespace):
    tasks = [str(uuid.uuid4()) for _ in range(4)]
    rows = outbox_rows(*((task, f"change {n}") for n in range(12) for task in tasks))  # interleaved
    with relay_thread(batch_size=5):  # rounds of 5 rows, up to 10 in flight: ~10 overlapping rounds
        wait_until(lambda: unsent() == 0, 60, "the backlog published")
    messages = read_events([row.event_id for row in rows], topics=["task-updates"])
    assert len(messages) == len(rows)
    for task in tasks:
        assert [m.event["event_id"] for m in messages if m.key == task] == [
            str(row.event_id) for row in rows if row.key == task
        ]


def test_a_row_refused_in_one_round_holds_back_its_tasks_rows_in_the_next_round(kafka_namespace):
    refused_task, other = str(uuid.uuid4()), str(uuid.uuid4())
    big, first, second, after_big, third, fourth, fifth = outbox_rows(
        (refused_task, "A" * 1_000_000), (other, "1"), (other, "2"),  # round 1 (3 rows)
        (refused_task, "later"), (other, "3"), (other, "4"), (other, "5"),  # read by the next rounds
    )
    with relay_thread(batch_size=3):
        wait_until(lambda: all(fresh(row).sent_at for row in (first, second, third, fourth, fifth)), 60,
                   "the other task's events published")
        assert fresh(big).parked_at is not None
    assert list(OutboxEvent.objects.held()) == [after_big]
    published = (first, second, third, fourth, fifth)
    messages = read_events([row.event_id for row in published], topics=["task-updates"])
    assert [m.event["event_id"] for m in messages] == [str(row.event_id) for row in published]
    assert not [m for m in messages if m.key == refused_task]


# While the test holds this advisory lock, marking rows sent waits for it: the relay has
# Kafka's acknowledgement and has not recorded it yet.
MARKING_LOCK = 0x6D61726B  # "mark"
MARKING_WAITS = f"""
CREATE FUNCTION test_marking_waits() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_advisory_xact_lock({MARKING_LOCK}); RETURN NULL; END $$;
CREATE TRIGGER test_marking_waits BEFORE UPDATE OF sent_at ON events_outboxevent
    FOR EACH STATEMENT EXECUTE FUNCTION test_marking_waits();
"""
MARKING_GOES_ON = "DROP TRIGGER test_marking_waits ON events_outboxevent; DROP FUNCTION test_marking_waits();"


def test_a_relay_killed_between_kafka_acknowledging_and_marking_sent_leaves_the_rows_to_its_successor(
    relay_processes,
):
    tasks = [str(uuid.uuid4()) for _ in range(3)]
    with connection.cursor() as cursor:
        cursor.execute(MARKING_WAITS)
    try:
        with psycopg.connect(**connection.get_connection_params(), autocommit=True) as holder:
            holder.execute("SELECT pg_advisory_lock(%s)", [MARKING_LOCK])
            [relay] = relay_processes(1)
            rows = outbox_rows(*((task, f"change {n}") for n in range(4) for task in tasks))
            read_events([row.event_id for row in rows], topics=["task-updates"])  # all acknowledged
            relay.kill()
            # Its connections die with it: PostgreSQL notices a dead client only when it next
            # talks to it, so the statement waiting for the lock is ended as the crash would.
            holder.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event = 'advisory'"
            )
        assert unsent() == len(rows)  # acknowledged, never marked
    finally:
        with connection.cursor() as cursor:
            cursor.execute(MARKING_GOES_ON)

    relay_processes(1)
    wait_until(lambda: unsent() == 0, 60, "the successor re-sending the unmarked rows")
    messages = read_events([row.event_id for row in rows], topics=["task-updates"])
    copies = defaultdict(int)
    for message in messages:
        copies[message.event["event_id"]] += 1
    assert copies == {str(row.event_id): 2 for row in rows}  # nothing lost; the re-sent copies are skipped by id
    for task in tasks:
        ids = [row.event_id for row in rows if row.key == task]
        assert [m.event["event_id"] for m in messages if m.key == task] == [str(i) for i in ids + ids]


def change_tasks(tasks, rounds, start):
    """``rounds`` updates of every task; returns the tasks' new states."""
    for number in range(start, start + rounds):
        tasks = [services.task_update(task=task, context=CONTEXT, title=f"{task.id} #{number}") for task in tasks]
    return tasks


def versions_per_task(messages, *, dedupe):
    """{task_id: [version, ...]} of task-events in the order Kafka holds them (first copy of each event)."""
    seen = set()
    versions = defaultdict(list)
    for message in messages:
        if message.topic != "task-events":
            continue
        event_id = message.event["event_id"]
        if dedupe and event_id in seen:
            continue
        seen.add(event_id)
        versions[message.key].append(message.event["data"]["version"])
    return versions


def all_event_ids():
    return list(OutboxEvent.objects.values_list("event_id", flat=True))


def test_while_kafka_is_down_events_wait_and_then_arrive_exactly_once_in_order(private_kafka, relay_processes):
    [relay] = relay_processes(1, bootstrap_servers=private_kafka.bootstrap_servers)
    user = User.objects.create_user("down", password="x")
    tasks = [services.task_create(user=user, context=CONTEXT, title=f"task {i}") for i in range(5)]
    tasks = change_tasks(tasks, rounds=3, start=1)
    wait_until(lambda: unsent() == 0, 90, "relay publishing to the private broker")

    private_kafka.kill()
    tasks = change_tasks(tasks, rounds=5, start=4)
    wait_until(lambda: "Kafka does not acknowledge" in relay.log(), 90, "relay noticing the broker is down")
    assert relay.process.poll() is None, relay.log()
    assert unsent() > 0

    private_kafka.start()
    tasks = change_tasks(tasks, rounds=2, start=9)
    wait_until(lambda: unsent() == 0, 120, f"relay catching up after the broker came back\n{relay.log()}")
    assert "Kafka acknowledges again" in relay.log()

    event_ids = all_event_ids()
    messages = read_events(event_ids, timeout=90, **{"bootstrap.servers": private_kafka.bootstrap_servers})
    copies = defaultdict(int)
    for message in messages:
        copies[message.event["event_id"]] += 1
    assert set(copies) == {str(event_id) for event_id in event_ids}
    assert set(copies.values()) == {1}, "an event arrived twice"
    expected = list(range(1, 12))  # created (1) + 10 updates
    assert versions_per_task(messages, dedupe=False) == {str(task.id): expected for task in tasks}


def test_two_relays_side_by_side_keep_per_task_order_and_the_standby_takes_over(relay_processes):
    first, second = relay_processes(2)
    wait_until(lambda: "leader" in first.log() + second.log() and "standby" in first.log() + second.log(), 60,
             "one leader and one standby")
    leader, standby = (first, second) if "leader" in first.log() else (second, first)

    user = User.objects.create_user("pair", password="x")
    tasks = [services.task_create(user=user, context=CONTEXT, title=f"task {i}") for i in range(5)]
    tasks = change_tasks(tasks, rounds=4, start=1)
    leader.kill()  # mid-stream, without a goodbye: its session lock dies with it
    tasks = change_tasks(tasks, rounds=4, start=5)
    wait_until(lambda: "leader" in standby.log(), 60, "the standby taking over")
    wait_until(lambda: unsent() == 0, 90, "everything published")

    messages = read_events(all_event_ids(), timeout=90)
    # A killed leader may leave acknowledged-but-unmarked rows that its successor re-sends:
    # consumers skip such copies by event_id, and what they see is in order.
    assert versions_per_task(messages, dedupe=True) == {str(task.id): list(range(1, 10)) for task in tasks}

    assert standby.stop() == 0
    assert "relay: stopped" in standby.log()


def test_sigterm_stops_a_relay_waiting_for_an_absent_broker_and_leaves_its_events_unsent(relay_processes, free_port):
    [relay] = relay_processes(1, bootstrap_servers=f"127.0.0.1:{free_port}")  # nothing listens there
    wait_until(lambda: "leader" in relay.log(), 60, "the relay leading")
    task_id = str(uuid.uuid4())
    with transaction.atomic():
        emit(sync_task_changed(task_id), key=task_id)
    wait_until(lambda: "Kafka does not acknowledge" in relay.log(), 60, "the relay waiting for Kafka")
    started = time.monotonic()
    assert relay.stop(timeout=60) == 0, relay.log()
    assert time.monotonic() - started < 30
    assert "relay: stopped" in relay.log()
    assert unsent() == 1


def test_in_dapr_mode_the_relay_posts_raw_payloads_keyed_by_task_to_the_sidecar(dapr_sidecar):
    task_id = str(uuid.uuid4())
    with transaction.atomic():
        rows = [emit(sync_task_changed(task_id), key=task_id) for _ in range(3)]
    with relay_thread():
        wait_until(lambda: unsent() == 0, 30, "rows published through the sidecar")
    # Byte for byte what the Kafka transport produces (row.payload.encode()), in the task's order.
    assert [request["body"] for request in dapr_sidecar.requests] == [row.payload.encode() for row in rows]
    for request, row in zip(dapr_sidecar.requests, rows):
        assert request["path"] == f"/v1.0/publish/todo-pubsub/{topic_name('task-updates')}"
        assert request["query"] == {
            "metadata.rawPayload": "true",
            "metadata.partitionKey": task_id,
            "metadata.event_type": "sync.task_changed",
            "metadata.event_id": str(row.event_id),
        }
        assert request["content_type"] == "application/json"


def test_in_dapr_mode_a_failed_publish_is_retried_before_anything_after_it(dapr_sidecar):
    dapr_sidecar.failures = [500, 500]
    task_id = str(uuid.uuid4())
    with transaction.atomic():
        first, second = (emit(sync_task_changed(task_id), key=task_id) for _ in range(2))
    with relay_thread():
        wait_until(lambda: unsent() == 0, 30, "rows published after the failures")
    bodies = [request["body"].decode() for request in dapr_sidecar.requests]
    assert bodies == [first.payload, first.payload, first.payload, second.payload]


# ------------------------------------------------------------------ refused rows are parked


def parked_total():
    return REGISTRY.get_sample_value("outbox_events_parked_total", {"topic": "task-updates"}) or 0


def fresh(row):
    return OutboxEvent.objects.get(pk=row.pk)


def test_a_row_kafka_refuses_at_produce_is_parked_and_holds_back_only_later_rows_of_its_task(outbox_relay):
    big_task, other, third = (str(uuid.uuid4()) for _ in range(3))
    parked_before = parked_total()
    first_other, big, after_big, second_other, of_third = outbox_rows(
        (other, ""), (big_task, "A" * 1_000_000), (big_task, "later"), (other, "again"), (third, ""),
    )
    wait_until(lambda: fresh(big).parked_at is not None, 60, "the oversized row parked")
    wait_until(lambda: all(fresh(row).sent_at for row in (first_other, second_other, of_third)), 60,
             "the other tasks' events published")
    assert outbox_relay.leading  # still the leader, not crashed

    assert "MSG_SIZE_TOO_LARGE" in fresh(big).park_reason
    assert fresh(after_big).sent_at is None and fresh(after_big).parked_at is None
    assert list(OutboxEvent.objects.held()) == [after_big]
    assert parked_total() == parked_before + 1
    messages = read_events([first_other.event_id, second_other.event_id, of_third.event_id], topics=["task-updates"])
    assert [m.event["event_id"] for m in messages if m.key == other] == [str(first_other.event_id),
                                                                         str(second_other.event_id)]

    # Still relaying: a new event of another task goes straight through.
    [later_event] = outbox_rows((third, "new"))
    wait_until(lambda: fresh(later_event).sent_at is not None, 30, "a new event published")
    assert fresh(after_big).sent_at is None


def set_topic_limit(base_topic, max_message_bytes):
    resource = ConfigResource(
        ResourceType.TOPIC, topic_name(base_topic),
        incremental_configs=[ConfigEntry("max.message.bytes", str(max_message_bytes),
                                         incremental_operation=AlterConfigOpType.SET)],
    )
    admin = admin_client()  # keep the handle alive until the future resolves
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)

    def applied():  # the controller accepted it; the broker applies it a moment later
        [described] = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic_name(base_topic))]).values()
        return described.result(timeout=30)["max.message.bytes"].value == str(max_message_bytes)

    wait_until(applied, 30, f"max.message.bytes={max_message_bytes} applied")


def test_a_broker_refusal_parks_the_row_and_retry_parked_publishes_it_then_its_successors_in_order(isolated_kafka):
    culprit_task, other = str(uuid.uuid4()), str(uuid.uuid4())
    with relay_thread():
        [warm_up] = outbox_rows((other, "warm-up"))  # the relay's producer now exists, with the default limit
        wait_until(lambda: fresh(warm_up).sent_at is not None, 60, "the warm-up row published")
        # Lowered behind the producer's back: now only the broker knows, and it refuses a batch.
        set_topic_limit("task-updates", 4096)
        big, after_big, of_other, last_of_big = outbox_rows(
            (culprit_task, "B" * 20_000), (culprit_task, "later"), (other, "meanwhile"), (culprit_task, "last"),
        )
        wait_until(lambda: fresh(big).parked_at is not None, 60, "the refused row parked")
        wait_until(lambda: fresh(of_other).sent_at is not None, 60, "the other task's event published")
        assert "MSG_SIZE_TOO_LARGE" in fresh(big).park_reason
        assert {row.pk for row in OutboxEvent.objects.held()} == {after_big.pk, last_of_big.pk}
        assert OutboxEvent.objects.parked().count() == 1  # the batch-mates were not parked with it

        set_topic_limit("task-updates", 1_048_588)  # the cause, fixed
        call_command("retry_parked", "--id", str(big.pk))
        wait_until(lambda: all(fresh(row).sent_at for row in (big, after_big, last_of_big)), 60,
                 "the parked row and its successors published")
    assert not OutboxEvent.objects.parked().exists()
    assert "MSG_SIZE_TOO_LARGE" in fresh(big).park_reason  # kept as history
    messages = read_events([row.event_id for row in (big, after_big, last_of_big)], topics=["task-updates"])
    assert [m.event["event_id"] for m in messages] == [str(row.event_id) for row in (big, after_big, last_of_big)]


def test_retry_parked_names_what_it_would_retry_in_a_dry_run_and_refuses_ids_that_are_not_parked(db, capsys):
    parked, pending = outbox_rows((str(uuid.uuid4()), ""), (str(uuid.uuid4()), ""))
    OutboxEvent.objects.filter(pk=parked.pk).update(
        parked_at=parked.created_at, park_reason="TOPIC_AUTHORIZATION_FAILED"
    )

    call_command("retry_parked", "--all", "--dry-run")
    out = capsys.readouterr().out
    assert f"{parked.pk} sync.task_changed" in out and "TOPIC_AUTHORIZATION_FAILED" in out
    assert "1 parked row(s) would be retried" in out
    assert fresh(parked).parked_at is not None

    with pytest.raises(CommandError, match=f"not parked.*{pending.pk}"):
        call_command("retry_parked", "--id", str(parked.pk), str(pending.pk))
    assert fresh(parked).parked_at is not None

    call_command("retry_parked", "--all")
    assert "retried 1 parked row(s)" in capsys.readouterr().out
    assert fresh(parked).parked_at is None


def test_in_dapr_mode_a_refused_message_is_parked_and_only_its_task_waits(dapr_sidecar):
    refused_task, other = str(uuid.uuid4()), str(uuid.uuid4())
    dapr_sidecar.failures = [(403, {"errorCode": "ERR_PUBSUB_FORBIDDEN", "message": "topic is not allowed"})]
    refused, after_refused, of_other = outbox_rows((refused_task, ""), (refused_task, "later"), (other, ""))
    with relay_thread():
        wait_until(lambda: fresh(of_other).sent_at is not None, 30, "the other task's event published")
        assert "403" in fresh(refused).park_reason and "ERR_PUBSUB_FORBIDDEN" in fresh(refused).park_reason
    bodies = [request["body"].decode() for request in dapr_sidecar.requests]
    assert bodies == [refused.payload, of_other.payload]  # the refused task's later row was never sent
    assert list(OutboxEvent.objects.held()) == [after_refused]


def test_in_dapr_mode_a_broker_refusal_relayed_by_the_sidecar_parks_but_a_broker_outage_waits(dapr_sidecar):
    task_id = str(uuid.uuid4())
    dapr_sidecar.failures = [
        (500, {"errorCode": "ERR_PUBSUB_PUBLISH_MESSAGE",
               "message": "error when publish to topic t: kafka: client has run out of available brokers"}),
        503,
        (500, {"errorCode": "ERR_PUBSUB_PUBLISH_MESSAGE",
               "message": "kafka server: Message was too large, server rejected it to avoid allocation error"}),
    ]
    [row] = outbox_rows((task_id, ""))
    with relay_thread():
        wait_until(lambda: fresh(row).parked_at is not None, 30, "the row parked at the third answer")
    assert len(dapr_sidecar.requests) == 3  # two outages retried, then the refusal
    assert "too large" in fresh(row).park_reason


def test_in_dapr_mode_an_unreachable_sidecar_parks_nothing(settings, free_port, caplog):
    settings.EVENT_TRANSPORT = "dapr"
    settings.DAPR_HTTP_PORT = free_port  # nothing listens there
    [row] = outbox_rows((str(uuid.uuid4()), ""))
    with relay_thread():
        wait_until(lambda: "unreachable" in caplog.text, 30, "the relay noticing the outage")
    assert fresh(row).parked_at is None and fresh(row).sent_at is None

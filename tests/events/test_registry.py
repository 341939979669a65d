"""The consumer registry names each service's topic, group, handler, dead-letter topic and retries."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from audit.handlers import record_task_event, record_task_events
from events.core.retry import RetryPolicy
from events.registry import CONSUMERS, ConsumerSpec, get_consumer, load, register


def test_the_audit_consumer_reads_task_events_as_audit_service_and_dead_letters_to_its_dlq():
    audit = get_consumer("audit")
    assert (audit.topic, audit.group, audit.dead_letter_topic) == ("task-events", "audit-service", "task-events.dlq")
    assert audit.resolve_handler() is record_task_event
    assert audit.resolve_batch_handler() is record_task_events
    assert audit.event_types == {"task.created", "task.updated", "task.completed", "task.deleted"}


def test_the_retry_policy_defaults_come_from_settings(settings):
    settings.CONSUMER_RETRY_MAX_ATTEMPTS = 7
    settings.CONSUMER_RETRY_INITIAL_BACKOFF = 0.1
    spec = ConsumerSpec(name="x", topic="reminders", group="g", handler=print)
    assert spec.retry_policy() == RetryPolicy(max_attempts=7, initial_backoff=0.1, multiplier=2.0, max_backoff=30.0)
    assert spec.dead_letter_topic == "reminders.dlq"


def test_a_name_is_registered_once():
    with pytest.raises(ValueError, match="already registered"):
        register(ConsumerSpec(name="audit", topic="task-events", group="other", handler=print))
    assert get_consumer("audit").group == "audit-service"
    with pytest.raises(KeyError, match="registered: "):
        get_consumer("no-such-consumer")
    assert "no-such-consumer" not in CONSUMERS


# --- events/consumers.yaml: the entries as data, checked against the contract when loaded --------------

def consumers_file(tmp_path, text):
    path = tmp_path / "consumers.yaml"
    path.write_text(text)
    return path


def test_the_file_is_the_registry_in_its_order_with_every_field_it_names(tmp_path):
    assert [spec.name for spec in load()] == list(CONSUMERS)
    [digest] = load(consumers_file(tmp_path, """
digest:
  topic: reminders
  group: digest-service
  handler: notifications.handlers.on_reminder_due
  batch_handler: audit.handlers.record_task_events
  event_types: [reminder.due]
  via_dapr: false
  command: [python, manage.py, run_digest]
"""))
    assert digest == ConsumerSpec(
        name="digest", topic="reminders", group="digest-service", handler="notifications.handlers.on_reminder_due",
        batch_handler="audit.handlers.record_task_events", event_types={"reminder.due"}, via_dapr=False,
        command=("python", "manage.py", "run_digest"),
    )


def test_an_entry_without_event_types_wants_every_type_its_topic_carries_and_runs_run_consumer(tmp_path):
    [digest] = load(consumers_file(tmp_path, "digest: {topic: reminders, group: g, handler: print}\n"))
    assert digest.event_types == {"reminder.scheduled", "reminder.due", "reminder.cancelled"}
    assert (digest.via_dapr, digest.command) == (True, ("python", "manage.py", "run_consumer", "digest"))


@pytest.mark.parametrize(("entry", "complaint"), [
    ("{group: g, handler: h}", r"consumer 'digest': missing \['topic'\], unknown \[\]"),
    ("{topic: reminders, group: g, handler: h, retries: 3}", r"unknown \['retries'\]; the fields are topic, group"),
    ("{topic: reminders.dlq, group: g, handler: h}", "topic 'reminders.dlq' carries no events; the topics that do: reminders, task-events, task-updates"),
    ("{topic: reminders, group: g, handler: h, event_types: [task.created]}", r"event_types \['task.created'\]: the types of reminders are reminder.cancelled"),
    ("{topic: reminders, group: g, handler: h, event_types: reminder.due}", "event_types 'reminder.due'"),
    ("{topic: reminders, group: g, handler: h, via_dapr: 'no'}", "via_dapr must be true or false, not 'no'"),
    ("{topic: reminders, group: g, handler: h, command: python manage.py run_digest}", "command must be a list of words"),
    ("[reminders]", "consumer 'digest': expected a mapping of fields"),
])
def test_a_wrong_entry_is_refused_with_the_file_the_consumer_and_the_field_named(tmp_path, entry, complaint):
    path = consumers_file(tmp_path, f"digest: {entry}\n")
    with pytest.raises(ImproperlyConfigured, match=complaint) as refused:
        load(path)
    assert str(refused.value).startswith(f"{path}: ")


def test_a_consumer_named_twice_is_refused_not_the_last_one_kept(tmp_path):
    twice = "digest: {topic: reminders, group: a, handler: h}\ndigest: {topic: reminders, group: b, handler: h}\n"
    path = consumers_file(tmp_path, twice)
    with pytest.raises(ImproperlyConfigured, match=f"^{path}: named twice: digest$"):
        load(path)

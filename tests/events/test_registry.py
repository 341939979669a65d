"""The consumer registry names each service's topic, group, handler, dead-letter topic and retries."""

import pytest

from audit.handlers import record_task_event, record_task_events
from events.core.retry import RetryPolicy
from events.registry import CONSUMERS, ConsumerSpec, get_consumer, register


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

"""The one registry of the system's consumers (Sentry style): name -> what ``run_consumer <name>`` runs.

Each entry says which topic a service reads, under which consumer group (one group per service,
CONTRACT.md section 4), which handler receives the validated events of which types, where dead
letters go and how failures are retried. Handlers are plain functions in their app's
``handlers.py``; they take the validated event dict and know nothing about Kafka.

Later services add themselves here with ``register(ConsumerSpec(...))``.
"""

from dataclasses import dataclass, field

from django.utils.module_loading import import_string

from events.core.retry import RetryPolicy
from events.schemas import EVENT_TYPES
from events.topics import REMINDERS, TASK_EVENTS, TASK_UPDATES, dead_letter_topic


@dataclass(frozen=True)
class ConsumerSpec:
    name: str
    topic: str  # base name, see events.topics.topic_name
    group: str  # base name, see events.topics.group_name
    handler: object  # a callable or the dotted path of one: handler(event) -> None
    # Optional, likewise: batch_handler([event, ...]) -> None with the effects of handler on each
    # event, for events fetched together (fewer statements); failures are retried per event.
    batch_handler: object = None
    event_types: frozenset = field(default_factory=frozenset)  # empty: every type of the topic
    dead_letter_topic: str = ""  # base name; defaults to "<topic>.dlq"
    retry: RetryPolicy | None = None  # None: the CONSUMER_RETRY_* settings
    # Dapr may deliver this consumer's events over HTTP (EVENT_TRANSPORT=dapr, events.transports.dapr).
    via_dapr: bool = True

    def __post_init__(self):
        object.__setattr__(self, "event_types", frozenset(self.event_types))
        if not self.dead_letter_topic:
            object.__setattr__(self, "dead_letter_topic", dead_letter_topic(self.topic))

    def resolve_handler(self):
        return _resolve(self.handler)

    def resolve_batch_handler(self):
        return _resolve(self.batch_handler)

    def retry_policy(self):
        return self.retry or RetryPolicy.from_settings()

    def wants(self, event_type):
        return not self.event_types or event_type in self.event_types


def _resolve(handler):
    return import_string(handler) if isinstance(handler, str) else handler


CONSUMERS = {}


def register(spec):
    if spec.name in CONSUMERS:
        raise ValueError(f"a consumer named {spec.name!r} is already registered")
    CONSUMERS[spec.name] = spec
    return spec


def get_consumer(name):
    try:
        return CONSUMERS[name]
    except KeyError:
        raise KeyError(f"no consumer named {name!r}; registered: {', '.join(sorted(CONSUMERS))}") from None


TASK_EVENT_TYPES = frozenset(name for name, (topic, _) in EVENT_TYPES.items() if topic == TASK_EVENTS)

register(
    ConsumerSpec(
        name="audit",
        topic=TASK_EVENTS,
        group="audit-service",
        handler="audit.handlers.record_task_event",
        batch_handler="audit.handlers.record_task_events",
        event_types=TASK_EVENT_TYPES,
    )
)

register(
    ConsumerSpec(
        name="realtime",
        topic=TASK_UPDATES,
        group="websocket-service",
        handler="tasks.realtime.handlers.forward_task_change",
        batch_handler="tasks.realtime.handlers.forward_task_changes",
        event_types={"sync.task_changed"},
    )
)

register(
    ConsumerSpec(
        name="recurrence",
        topic=TASK_EVENTS,
        group="recurring-task-service",
        handler="recurrence.handlers.on_task_completed",
        batch_handler="recurrence.handlers.on_tasks_completed",
        event_types={"task.completed"},
    )
)

register(
    ConsumerSpec(
        name="notifications",
        topic=REMINDERS,
        group="notification-service",
        handler="notifications.handlers.on_reminder_due",
        batch_handler="notifications.handlers.on_reminders_due",
        event_types={"reminder.due"},
    )
)

# The reminder scheduler's consumer half; `run_scheduler` runs it beside the clock that fires.
register(
    ConsumerSpec(
        name="scheduler",
        topic=REMINDERS,
        group="reminder-scheduler",
        handler="notifications.scheduler.on_schedule_change",
        batch_handler="notifications.scheduler.on_schedule_changes",
        event_types={"reminder.scheduled", "reminder.cancelled"},
        via_dapr=False,  # the clock beside it needs its own Kafka consumer, in both transports
    )
)

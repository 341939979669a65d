"""The Kafka topics and consumer groups of CONTRACT.md section 4, named in one place.

Code refers to topics by their base name (``TASK_EVENTS``); ``topic_name`` adds the
deployment's ``KAFKA_TOPIC_PREFIX`` at call time, so tests can switch prefixes per run.
"""

from dataclasses import dataclass, field

from django.conf import settings

TASK_EVENTS = "task-events"
REMINDERS = "reminders"
TASK_UPDATES = "task-updates"

DLQ_SUFFIX = ".dlq"
DAY_MS = 24 * 60 * 60 * 1000
SEVEN_DAYS_MS = 7 * DAY_MS
# Dead letters wait for a fix and a replay (CONTRACT.md section 7), then expire like any other data.
DEAD_LETTER_RETENTION_MS = 30 * DAY_MS


@dataclass(frozen=True)
class TopicSpec:
    base_name: str
    config: dict = field(default_factory=dict)


def _with_dead_letters(*specs):
    return tuple(
        spec
        for main in specs
        for spec in (
            main, TopicSpec(dead_letter_topic(main.base_name), {"retention.ms": str(DEAD_LETTER_RETENTION_MS)})
        )
    )


def dead_letter_topic(base_name):
    return base_name + DLQ_SUFFIX


TOPICS = _with_dead_letters(
    TopicSpec(TASK_EVENTS, {"retention.ms": str(SEVEN_DAYS_MS)}),
    TopicSpec(REMINDERS),
    TopicSpec(TASK_UPDATES),
)


def topic_name(base_name):
    return settings.KAFKA_TOPIC_PREFIX + base_name


def base_topic_name(full_name):
    """Inverse of ``topic_name``: the contract's name of a prefixed topic."""
    prefix = settings.KAFKA_TOPIC_PREFIX
    return full_name[len(prefix):] if prefix and full_name.startswith(prefix) else full_name


def group_name(base_group):
    return settings.KAFKA_GROUP_PREFIX + base_group

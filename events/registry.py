"""The one registry of the system's consumers (Sentry style): name -> what ``run_consumer <name>`` runs.

Each entry says which topic a service reads, under which consumer group (one group per service,
CONTRACT.md section 4), which handler receives the validated events of which types, where dead
letters go and how failures are retried. Handlers are plain functions in their app's
``handlers.py``; they take the validated event dict and know nothing about Kafka.

The entries are data, in ``events/consumers.yaml`` (its comment lists the fields), because the Helm
chart reads the same list (through its link ``helm/todo-platform/files/consumers.yaml``): adding a
consumer is its handler and an entry there. Loading checks every entry against the contract (a
topic that carries events, event types of that topic, known fields) and refuses a wrong one with
the file, the consumer and the field named. Tests register specs of their own with ``register``.
"""

from dataclasses import dataclass, field
from pathlib import Path

import yaml
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from events.core.retry import RetryPolicy
from events.schemas import EVENT_TYPES
from events.topics import dead_letter_topic

CONSUMERS_FILE = Path(__file__).with_name("consumers.yaml")


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
    command: tuple = ()  # its process; empty: python manage.py run_consumer <name>

    def __post_init__(self):
        object.__setattr__(self, "event_types", frozenset(self.event_types))
        if not self.dead_letter_topic:
            object.__setattr__(self, "dead_letter_topic", dead_letter_topic(self.topic))
        object.__setattr__(self, "command", tuple(self.command) or ("python", "manage.py", "run_consumer", self.name))

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


# --- events/consumers.yaml ---------------------------------------------------------------------------

REQUIRED_FIELDS = ("topic", "group", "handler")
OPTIONAL_FIELDS = ("batch_handler", "event_types", "via_dapr", "command")


def load(path=CONSUMERS_FILE):
    """The ConsumerSpecs of ``path``, in its order; ImproperlyConfigured names what is wrong."""
    with open(path) as stream:
        entries = yaml.load(stream, Loader=_NoDuplicateNames)
    if not isinstance(entries, dict):
        raise ImproperlyConfigured(f"{path}: expected a mapping of consumer names to their entries")
    return [_spec(name, entry, path) for name, entry in entries.items()]


class _NoDuplicateNames(yaml.SafeLoader):
    """YAML keeps the last of two equal keys silently; a consumer (or a field) named twice is refused."""

    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
        if twice := sorted({key for key in keys if keys.count(key) > 1}):
            raise ImproperlyConfigured(f"{self.name}: named twice: {', '.join(map(str, twice))}")
        return super().construct_mapping(node, deep)


def _spec(name, entry, path):
    def refuse(problem):
        raise ImproperlyConfigured(f"{path}: consumer {name!r}: {problem}")

    if not isinstance(entry, dict):
        refuse("expected a mapping of fields")
    missing = [key for key in REQUIRED_FIELDS if key not in entry]
    unknown = sorted(set(entry) - set(REQUIRED_FIELDS) - set(OPTIONAL_FIELDS))
    if missing or unknown:
        refuse(f"missing {missing}, unknown {unknown}; the fields are {', '.join(REQUIRED_FIELDS + OPTIONAL_FIELDS)}")
    carried = {event_type for event_type, (topic, _) in EVENT_TYPES.items() if topic == entry["topic"]}
    if not carried:
        topics = sorted({topic for topic, _ in EVENT_TYPES.values()})
        refuse(f"topic {entry['topic']!r} carries no events; the topics that do: {', '.join(topics)}")
    event_types = entry.get("event_types", sorted(carried))
    if not isinstance(event_types, list) or not set(event_types) <= carried:
        refuse(f"event_types {event_types!r}: the types of {entry['topic']} are {', '.join(sorted(carried))}")
    if not isinstance(entry.get("via_dapr", True), bool):
        refuse(f"via_dapr must be true or false, not {entry['via_dapr']!r}")
    command = entry.get("command", [])
    if not isinstance(command, list) or not all(isinstance(word, str) for word in command):
        refuse(f"command must be a list of words, not {command!r}")
    return ConsumerSpec(name=name, **{**entry, "event_types": event_types, "command": command})


def register_file(path=CONSUMERS_FILE):
    for spec in load(path):
        register(spec)


register_file()

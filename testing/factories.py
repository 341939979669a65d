"""Factories (factory-boy) of the things tests build again and again: users, tasks, and the event
dicts of CONTRACT.md section 4, made as the services make them.

``UserFactory()`` / ``TaskFactory(user=...)`` save rows (a task saved here emits nothing: the
services do that); ``TaskObjectFactory()`` is a task object dict (section 2); ``task_event``,
``sync_task_changed`` and ``event_owner`` build whole events.
"""

import uuid
from functools import cache

import factory
from django.conf import settings
from django.contrib.auth.hashers import make_password
from factory.django import DjangoModelFactory, Password

from events.schemas import utc_timestamp
from tasks.events import SYNC_CHANGE_OF, EventContext, sync_event
from tasks.events import task_event as make_task_event
from tasks.sync import record_change

PASSWORD = "a-long-passphrase"


def hashed(password):
    """``password`` hashed once per run and hasher: PBKDF2's 10^6 rounds take about a second here,
    and factory-boy would pay them for every user it builds, even one get_or_create then finds.
    Keyed by the first hasher too, since the fast tier hashes with a cheap one (tests/conftest.py)
    and the processes of an e2e test verify with the project's."""
    return _hashed(password, settings.PASSWORD_HASHERS[0])


@cache
def _hashed(password, hasher_path):
    return make_password(password)


class UserFactory(DjangoModelFactory):
    class Meta:
        model = settings.AUTH_USER_MODEL
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user-{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.org")
    password = Password(PASSWORD, transform=hashed)


class TaskFactory(DjangoModelFactory):
    class Meta:
        model = "tasks.Task"

    user = factory.SubFactory(UserFactory)
    title = factory.Sequence(lambda n: f"Task {n}")


class TaskObjectFactory(factory.DictFactory):
    """The task object of the REST API and the sync events, at version 1 of a new open task."""

    id = factory.LazyFunction(lambda: str(uuid.uuid4()))
    title = "Buy milk"
    description = ""
    completed = False
    completed_at = None
    due_date = None
    remind_at = None
    priority = 4
    recurrence_rule = None
    tags = factory.LazyFunction(list)
    parent_task_id = None
    user_id = "1"
    version = 1
    created_at = factory.LazyFunction(utc_timestamp)
    updated_at = factory.SelfAttribute("created_at")


def context():
    return EventContext(source="todo-api", correlation_id=str(uuid.uuid4()))


def event_owner():
    """The user that ``task_event`` gives its events to when the test names none."""
    return UserFactory(username="event-owner")


def task_event(event_type="task.created", *, task_id=None, user_id=None, title="Buy milk", logged=True, **data):
    """A complete, valid task event, made as the services make it.

    With ``logged`` (the default) the sync-log row that the services write beside it is written
    too (tasks.sync.record_change of the sync event of the same task version), so the consumers
    that check task events against the log (the audit trail) take it for a real one; with
    ``logged=False`` it is a forgery. ``user_id`` names an existing user; by default the event's
    owner is ``event_owner()``, or, unlogged, a user id nobody has.
    """
    if user_id is None:
        user_id = str(event_owner().id) if logged else "0"
    completed = event_type == "task.completed"
    task = TaskObjectFactory(
        id=str(task_id or uuid.uuid4()), title=title, completed=completed, user_id=str(user_id), **data
    )
    if completed and "completed_at" not in data:
        task["completed_at"] = task["updated_at"]
    made_by = context()
    if logged:
        record_change(sync_event(SYNC_CHANGE_OF[event_type], task, made_by))
    return make_task_event(event_type, task, made_by)


def sync_task_changed(task_id, description=""):
    """A valid sync.task_changed event (topic task-updates) of a new task ``task_id``, unlogged; two
    calls for one task differ only in ``event_id`` and ``timestamp``."""
    task = TaskObjectFactory(id=task_id, title="t", description=description, created_at="2030-01-01T00:00:00Z")
    return sync_event("created", task, EventContext(source="todo-api", correlation_id="c"))

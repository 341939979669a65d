"""The one executor of the task tools: MCP server, agent loop and built-in interpreter all call it.

    execute_tool(user, "add_task", {"title": "buy milk"}, context=EventContext.new(SOURCE))

It checks the arguments against the tool's schema (``tools.validate_arguments``), parses them
with the REST API's serializers (times without an offset are read in the user's time zone),
finds the task among the caller's own tasks only, and acts through ``tasks.services``. It
returns the task objects of the contract (``list_tasks``: ``{count, results}``). Anything that
cannot be carried out raises ``ToolError`` with a message fit for a person or a model: a
service's ValidationError names its fields, and another user's task is "no such task", exactly
like a task that does not exist.
"""

import zoneinfo

from django.db import transaction
from django.utils import timezone

from tasks import selectors, services
from tasks.recurrence_rules import carry_over_remind_at
from tasks.chat.tools import (
    ADD_TASK,
    COMPLETE_TASK,
    DELETE_TASK,
    LIST_TASKS,
    UPDATE_TASK,
    ToolError,
    resolve_task_reference,
    validate_arguments,
)
from tasks.errors import api_error
from tasks.events import task_object
from tasks.models import Task
from tasks.ratelimit import RateLimited
from tasks.serializers import TaskFilterSerializer, TaskInputSerializer

# metadata.source of the events the chat tools cause (CONTRACT.md section 4).
SOURCE = "chat-api"
DEFAULT_LIST_LIMIT = 50
# How many of the caller's tasks a task_title is resolved among.
REFERENCE_CANDIDATES = 200


def execute_tool(user, name, arguments, *, context):
    """Carry out one tool call for ``user``; returns its JSON-serialisable result or raises ToolError."""
    validate_arguments(name, arguments)
    with timezone.override(zoneinfo.ZoneInfo(user.timezone)):
        try:
            return _TOOLS[name](user, dict(arguments), context)
        except RateLimited as limited:  # the REST API's 429: here a message for the person or model
            raise ToolError(str(limited)) from None


def _parsed(serializer_class, data, **kwargs):
    serializer = serializer_class(data=data, **kwargs)
    if not serializer.is_valid():
        raise ToolError(f"Invalid arguments: {_describe(serializer.errors)}")
    return dict(serializer.validated_data)


def _describe(errors):
    """{"remind_at": ["..."]} -> "remind_at: ..." (the fields named, as the REST API does)."""
    if isinstance(errors, dict):
        return "; ".join(
            f"{field}: {_describe(messages)}" if field not in ("__all__", "non_field_errors") else _describe(messages)
            for field, messages in errors.items()
        )
    if isinstance(errors, (list, tuple)):
        return " ".join(_describe(message) for message in errors)
    return str(errors)


def _call_service(service, **kwargs):
    """Run a service; its errors read as the REST API's (tasks.errors), in a ToolError."""
    try:
        return service(**kwargs)
    except Exception as error:
        translated = api_error(error)
        if translated is None:
            raise
        raise ToolError(f"The task was not saved: {_describe(translated.detail)}") from None


def _task(user, arguments, *, prefer_completed=None):
    """The caller's task named by task_id or task_title; anyone else's is "no such task"."""
    if "task_id" in arguments:
        task = Task.objects.filter(user=user, pk=arguments["task_id"]).first()
        if task is None:
            raise ToolError(f"There is no such task: {arguments['task_id']}.")
        return task
    title = arguments["task_title"]
    # Spacing is not part of a title's words (resolve_task_reference ignores it too).
    candidates = selectors.task_list(user=user, search=" ".join(title.split()))[:REFERENCE_CANDIDATES]
    found = resolve_task_reference(title, [task_object(task) for task in candidates], prefer_completed=prefer_completed)
    task = Task.objects.filter(user=user, pk=found["id"]).first()
    if task is None:  # deleted since it was found
        raise ToolError(f"There is no such task: {found['id']}.")
    return task


def _add_task(user, arguments, context):
    fields = _parsed(TaskInputSerializer, arguments)
    return task_object(_call_service(services.task_create, user=user, context=context, **fields))


def _list_tasks(user, arguments, context):
    limit = arguments.pop("limit", DEFAULT_LIST_LIMIT)
    filters = _parsed(TaskFilterSerializer, arguments)
    tasks = selectors.task_list(user=user, tags=filters.pop("tag", ()), **filters)
    return {"count": tasks.count(), "results": [task_object(task) for task in tasks[:limit]]}


@transaction.atomic  # the field changes and the completion commit together or not at all
def _update_task(user, arguments, context):
    completed = arguments.pop("completed", None)
    task = _task(user, arguments, prefer_completed=None if completed is None else not completed)
    expected_version = arguments.pop("expected_version", None)
    changes = {key: value for key, value in arguments.items() if key not in ("task_id", "task_title")}
    if changes or completed is None:  # with no change at all, the update still checks expected_version
        fields = _with_reminder_moved(task, _parsed(TaskInputSerializer, changes, partial=True))
        task = _call_service(
            services.task_update, task=task, context=context, expected_version=expected_version, **fields
        )
        expected_version = None  # checked: the completion below follows this call's own version
    if completed is True:
        task = _call_service(services.task_complete, task=task, context=context, expected_version=expected_version)
    elif completed is False:
        task = _call_service(services.task_reopen, task=task, context=context, expected_version=expected_version)
    return task_object(task)


def _with_reminder_moved(task, fields):
    """A due date moved without a word about the reminder takes the reminder along: "an hour
    before" stays an hour before, as it does for a recurring task's next occurrence."""
    if "remind_at" in fields or not fields.get("due_date") or task.due_date is None or task.remind_at is None:
        return fields
    moved = carry_over_remind_at(old_due=task.due_date, old_remind_at=task.remind_at, new_due=fields["due_date"])
    return {**fields, "remind_at": moved}


def _complete_task(user, arguments, context):
    task = _task(user, arguments, prefer_completed=False)
    return task_object(
        _call_service(
            services.task_complete, task=task, context=context, expected_version=arguments.get("expected_version")
        )
    )


def _delete_task(user, arguments, context):
    task = _task(user, arguments)
    obj = task_object(task)
    _call_service(services.task_delete, task=task, context=context, expected_version=arguments.get("expected_version"))
    return obj


_TOOLS = {
    ADD_TASK: _add_task,
    LIST_TASKS: _list_tasks,
    UPDATE_TASK: _update_task,
    COMPLETE_TASK: _complete_task,
    DELETE_TASK: _delete_task,
}

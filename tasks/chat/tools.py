"""The five task tools of the chat API, defined once.

The MCP server publishes these names, descriptions and argument schemas; the agent loop hands
the same definitions to an OpenAI-compatible model; the built-in interpreter emits calls that
validate against them. Arguments mirror the REST task fields (CONTRACT.md section 2).

A tool call is the plain dict ``{"name": "add_task", "arguments": {...}}``.

Naming a task. ``update_task``, ``complete_task`` and ``delete_task`` take either ``task_id``
(the task's uuid, what a model gets from ``list_tasks``) or ``task_title`` (what a person says:
"mark buy milk as done"). Whoever executes a call with ``task_title`` resolves it with
``resolve_task_reference`` below over the caller's tasks found by
``list_tasks(search=task_title)``; a title that matches no task or several is a ``ToolError``
that names the candidates, never a guess.

Reopening is ``update_task`` with ``completed: false`` (the same change as
``POST /api/tasks/{id}/reopen/``); ``completed: true`` there is the same as ``complete_task``.
The contract's MCP tool list has no separate reopen tool, and one field covers both ways.

Expected version. ``update_task``, ``complete_task`` and ``delete_task`` also take an optional
``expected_version`` (the REST API's If-Match): when the task is no longer at that version the
call changes nothing and its ToolError names the current version.
"""

import copy

import jsonschema

from events.schemas import LOWEST_PRIORITY, PRIORITY_NAMES, TASK_FIELDS

ADD_TASK = "add_task"
LIST_TASKS = "list_tasks"
UPDATE_TASK = "update_task"
COMPLETE_TASK = "complete_task"
DELETE_TASK = "delete_task"


class ToolError(Exception):
    """A tool call that cannot be carried out; the message is shown to the model or the person."""


_DATETIME_NOTE = (
    "ISO 8601 date-time, e.g. 2025-12-20T18:00:00Z. A time with an offset or Z is taken as is; "
    "a time without one is read in the user's time zone."
)

_TASK_REFERENCE = {
    "task_id": {
        "type": "string",
        "format": "uuid",
        "description": "The task's id, as returned by list_tasks or add_task.",
    },
    "task_title": {
        "type": "string",
        "minLength": 1,
        "description": (
            "Instead of task_id: words of the task's title. It must match exactly one of the user's "
            "tasks (an exact title wins over partial matches); otherwise the tool answers with an "
            "error that lists the candidates."
        ),
    },
    "expected_version": {
        "type": "integer",
        "minimum": 1,
        "description": (
            "Optional: the task's version as last read. If the task changed since, nothing is done "
            "and the error names the current version (read the task again before retrying)."
        ),
    },
}

_TASK_FIELDS = {
    # Types and limits are the event contract's (events.schemas.TASK_FIELDS); the descriptions are for the model.
    "title": {**TASK_FIELDS["title"], "description": "Short title of the task."},
    "description": {**TASK_FIELDS["description"], "description": "Longer notes; empty by default."},
    "due_date": {
        "type": ["string", "null"],
        "format": "date-time",
        "description": f"When the task is due, or null for none. {_DATETIME_NOTE}",
    },
    "remind_at": {
        "type": ["string", "null"],
        "format": "date-time",
        "description": (
            f"When to remind the user, or null for no reminder. Needs a due_date and must not be after it. "
            f"{_DATETIME_NOTE}"
        ),
    },
    "priority": {
        **TASK_FIELDS["priority"],
        "description": (
            ", ".join(f"{number} {name}" for number, name in PRIORITY_NAMES.items())
            + f"; {LOWEST_PRIORITY} is the default."
        ),
    },
    "tags": {
        **copy.deepcopy(TASK_FIELDS["tags"]),
        "description": "Labels without '#', e.g. [\"shopping\", \"personal\"].",
    },
    "recurrence_rule": {
        **TASK_FIELDS["recurrence_rule"],
        "description": (
            "RFC 5545 RRULE body without DTSTART, e.g. FREQ=WEEKLY;BYDAY=MO, or null. Needs a due_date: "
            "the series repeats from the due date's wall time in the user's time zone."
        ),
    },
}

TOOLS = [
    {
        "name": ADD_TASK,
        "description": (
            "Create a task for the user and return it. Only title is required; times are ISO 8601 "
            "(convert phrases like 'tomorrow at 5pm' using the user's time zone)."
        ),
        "input_schema": {
            "type": "object",
            "properties": copy.deepcopy(_TASK_FIELDS),
            "required": ["title"],
            "additionalProperties": False,
        },
    },
    {
        "name": LIST_TASKS,
        "description": (
            "List the user's tasks, newest first unless ordered otherwise, with the same filters as "
            "GET /api/tasks/. Every filter given must match. Returns {count, results: [task, ...]}."
        ),
        "input_schema": {
            "type": "object",
            "properties": {
                "completed": {"type": "boolean", "description": "true: only completed tasks; false: only open ones."},
                "priority": {"type": "integer", "minimum": 1, "maximum": 4, "description": "Only this priority."},
                "tag": {
                    **copy.deepcopy(TASK_FIELDS["tags"]),
                    "description": "Only tasks that carry every one of these tags (without '#').",
                },
                "search": {
                    "type": "string",
                    "minLength": 1,
                    "description": "Words found in the title or description, case-insensitive.",
                },
                "due_after": {
                    "type": "string",
                    "format": "date-time",
                    "description": f"Only tasks due at or after this time. {_DATETIME_NOTE}",
                },
                "due_before": {
                    "type": "string",
                    "format": "date-time",
                    "description": f"Only tasks due at or before this time. {_DATETIME_NOTE}",
                },
                "ordering": {
                    "type": "string",
                    "enum": ["due_date", "-due_date", "priority", "-priority", "created_at", "-created_at", "title"],
                    "description": "Sort order; a leading '-' reverses it.",
                },
                "limit": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 200,
                    "description": "At most this many tasks (default 50).",
                },
            },
            "additionalProperties": False,
        },
    },
    {
        "name": UPDATE_TASK,
        "description": (
            "Change fields of one task, named by task_id or task_title; fields left out stay as they "
            "are, except that a due_date moved without a remind_at takes the reminder along (it keeps "
            "its distance from the due date). completed: false reopens a completed task; completed: "
            "true completes it. Returns the task."
        ),
        "input_schema": {
            "type": "object",
            "properties": {
                **copy.deepcopy(_TASK_REFERENCE),
                **copy.deepcopy(_TASK_FIELDS),
                "completed": {"type": "boolean", "description": "false reopens the task, true completes it."},
            },
            "additionalProperties": False,
        },
    },
    {
        "name": COMPLETE_TASK,
        "description": (
            "Mark one task, named by task_id or task_title, as completed and return it. Completing a "
            "completed task changes nothing. A recurring task's next occurrence is then created."
        ),
        "input_schema": {
            "type": "object",
            "properties": copy.deepcopy(_TASK_REFERENCE),
            "additionalProperties": False,
        },
    },
    {
        "name": DELETE_TASK,
        "description": "Delete one task, named by task_id or task_title, and return the deleted task.",
        "input_schema": {
            "type": "object",
            "properties": copy.deepcopy(_TASK_REFERENCE),
            "additionalProperties": False,
        },
    },
]

TOOL_NAMES = [tool["name"] for tool in TOOLS]
TOOLS_BY_NAME = {tool["name"]: tool for tool in TOOLS}


def openai_tools():
    """The tools in the ``tools`` format of the OpenAI chat-completions API."""
    return [
        {
            "type": "function",
            "function": {
                "name": tool["name"],
                "description": tool["description"],
                "parameters": copy.deepcopy(tool["input_schema"]),
            },
        }
        for tool in TOOLS
    ]


def validate_arguments(name, arguments):
    """Check a call's arguments against the tool's schema; ``ToolError`` says what is wrong.

    "Exactly one of task_id and task_title" is checked here rather than with ``oneOf`` in the
    schema, because OpenAI's API refuses a tool schema with ``oneOf`` at the top level.
    """
    tool = TOOLS_BY_NAME.get(name)
    if tool is None:
        raise ToolError(f"There is no tool {name!r}; the tools are {', '.join(TOOL_NAMES)}.")
    if not isinstance(arguments, dict):
        raise ToolError(f"The arguments of {name} must be a JSON object.")
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(tool["input_schema"]).iter_errors(arguments))
    if error is not None:
        where = ".".join(str(part) for part in error.absolute_path)
        raise ToolError(f"Invalid arguments for {name}: {where + ': ' if where else ''}{error.message}")
    if "task_id" in tool["input_schema"]["properties"] and ("task_id" in arguments) == ("task_title" in arguments):
        raise ToolError(f"{name} needs exactly one of task_id and task_title.")


def _normalized(title):
    return " ".join(title.casefold().split())


def resolve_task_reference(task_title, candidates, *, prefer_completed=None):
    """The one task that ``task_title`` names among ``candidates`` (task objects of the contract).

    The rule, in order:
    1. only tasks whose title contains the words of ``task_title`` (case and spacing ignored)
       count; ``list_tasks(search=...)`` also matches descriptions, which do not name a task;
    2. when ``prefer_completed`` is given (False for completing, True for reopening) and some
       of those are in that state, only those count: "mark groceries as done" means the open one;
    3. a task whose whole title equals ``task_title`` wins over partial matches;
    4. exactly one task left is the answer; none or several raise ``ToolError``.
    """
    wanted = _normalized(task_title)
    matches = [task for task in candidates if wanted in _normalized(task["title"])]
    if prefer_completed is not None:
        in_state = [task for task in matches if task["completed"] == prefer_completed]
        matches = in_state or matches
    exact = [task for task in matches if _normalized(task["title"]) == wanted]
    if len(exact) == 1:
        return exact[0]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ToolError(f"No task has a title matching {task_title!r}.")
    listed = "; ".join(f"{task['title']!r} ({task['id']})" for task in (exact or matches)[:10])
    raise ToolError(f"Several tasks match {task_title!r}: {listed}. Name the task by its task_id.")

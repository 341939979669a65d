"""One chat turn (POST /api/chat/): store the message, answer it, store the answer.

    turn = chat_respond(user=user, message="add buy milk tomorrow at 5pm", conversation_id=None)
    turn.conversation.id, turn.reply, turn.tool_calls

With a language model configured (``agent.llm_configured()``) the agent loop answers, seeing the
conversation so far; ``LLMError`` propagates (the view turns it into a 502). Otherwise the
built-in interpreter reads the message and its calls run through the same executor; the reply
is written from their results. Either way every tool call acts through
``tasks.chat.executor.execute_tool`` with one correlation id per turn.
"""

from dataclasses import dataclass
from zoneinfo import ZoneInfo

from django.http import Http404
from django.utils import timezone

from events.schemas import PRIORITY_NAMES, parse_timestamp, utc_timestamp
from tasks.chat.agent import llm_configured, run_agent, system_message
from tasks.chat.executor import SOURCE, execute_tool
from tasks.chat.interpreter import interpret, parse_task
from tasks.chat.models import ChatMessage, Conversation
from tasks.chat.tools import ADD_TASK, COMPLETE_TASK, DELETE_TASK, LIST_TASKS, UPDATE_TASK, ToolError
from tasks.events import EventContext

# How many earlier turns of a conversation the model sees.
HISTORY_LIMIT = 40
# How many of a conversation's latest messages GET /api/chat/<id>/ gives back.
HISTORY_SHOWN = 200
# How many tasks a list reply names.
LISTED_IN_REPLY = 10


@dataclass
class ChatTurn:
    conversation: Conversation
    reply: str
    tool_calls: list


def conversation_get_or_create(*, user, conversation_id=None):
    """The user's conversation ``conversation_id`` (anyone else's is a 404), or a new one."""
    if conversation_id is None:
        return Conversation.objects.create(user=user)
    conversation = Conversation.objects.filter(user=user, pk=conversation_id).first()
    if conversation is None:
        raise Http404("No such conversation.")
    return conversation


def conversation_history(*, user, conversation_id):
    """The user's conversation (anyone else's is a 404): its latest messages, oldest first, as
    ``{"conversation_id", "messages": [{"role", "content", "tool_calls", "created_at"}], "has_more"}``."""
    conversation = conversation_get_or_create(user=user, conversation_id=conversation_id)
    latest = list(conversation.messages.order_by("-id")[: HISTORY_SHOWN + 1])
    return {
        "conversation_id": str(conversation.id),
        "messages": [
            {"role": m.role, "content": m.content, "tool_calls": m.tool_calls, "created_at": utc_timestamp(m.created_at)}
            for m in reversed(latest[:HISTORY_SHOWN])
        ],
        "has_more": len(latest) > HISTORY_SHOWN,
    }


def task_preview(*, user, text, ignore=(), now=None):
    """What quick-add would create from ``text`` (POST /api/tasks/parse/): the add_task fields,
    and each phrase read with the chip label of its value, times in the user's zone.

    Raises ``interpreter.NotUnderstood`` when the text cannot become a task.
    """
    parsed = parse_task(text, timezone=user.timezone, now=now or timezone.now(), ignore=ignore)
    zone = ZoneInfo(user.timezone)
    spans = [
        {
            "field": span.field,
            "start": span.start,
            "end": span.end,
            "text": text[span.start : span.end],
            "label": _chip_label(span.field, text[span.start : span.end], parsed.fields, zone),
        }
        for span in parsed.spans
    ]
    return {"fields": parsed.fields, "spans": spans}


def _chip_label(field, phrase, fields, zone):
    """What a preview chip says: the value the phrase set, a time in the user's zone."""
    if field in ("due_date", "remind_at"):
        return _when(fields[field], zone)
    if field == "priority":
        return f"P{fields['priority']} {PRIORITY_NAMES[fields['priority']]}"
    if field == "tags":
        return "#" + phrase.lstrip("#").lower()
    if field == "description":
        return fields["description"]
    return " ".join(phrase.split())  # the recurrence as said: "every Monday"


def chat_respond(*, user, message, conversation_id=None, correlation_id=None):
    conversation = conversation_get_or_create(user=user, conversation_id=conversation_id)
    history = list(conversation.messages.order_by("-id")[:HISTORY_LIMIT])[::-1]
    ChatMessage.objects.create(conversation=conversation, role=ChatMessage.Role.USER, content=message)
    context = EventContext(SOURCE, correlation_id) if correlation_id else EventContext.new(SOURCE)

    def executor(name, arguments):
        return execute_tool(user, name, arguments, context=context)

    now = timezone.now()
    if llm_configured():
        messages = [
            system_message(timezone=user.timezone, now=now),
            *({"role": turn.role, "content": turn.content} for turn in history),
            {"role": "user", "content": message},
        ]
        result = run_agent(messages, executor=executor)
        reply, tool_calls = result.reply, result.tool_calls
    else:
        reply, tool_calls = _interpreted(message, user=user, now=now, executor=executor)

    ChatMessage.objects.create(
        conversation=conversation, role=ChatMessage.Role.ASSISTANT, content=reply, tool_calls=tool_calls
    )
    conversation.save(update_fields=["updated_at"])
    return ChatTurn(conversation, reply, tool_calls)


def _interpreted(message, *, user, now, executor):
    interpretation = interpret(message, timezone=user.timezone, now=now)
    if not interpretation.understood:
        return interpretation.reply, []
    records = []
    for number, call in enumerate(interpretation.tool_calls, start=1):
        record = {"id": f"call_{number}", "name": call["name"], "arguments": call["arguments"]}
        try:
            record["result"] = executor(call["name"], call["arguments"])
        except ToolError as error:
            record["error"] = str(error)
        records.append(record)
    zone = ZoneInfo(user.timezone)
    return " ".join(_describe(record, zone) for record in records), records


def _when(timestamp, zone):
    """"2026-12-16T16:00:00Z" -> "Wed 16 Dec 17:00" in the user's zone."""
    moment = parse_timestamp(timestamp).astimezone(zone)
    return f"{moment:%a} {moment.day} {moment:%b %H:%M}"


def _task_line(task, zone):
    line = f"'{task['title']}'"
    if task["due_date"]:
        line += f" for {_when(task['due_date'], zone)}"
    return line


def _describe(record, zone):
    """The plain-English reply to one carried-out call."""
    if "error" in record:
        return f"Sorry, I couldn't do that: {record['error']}"
    name, result = record["name"], record["result"]
    if name == ADD_TASK:
        extras = []
        if result["remind_at"]:
            extras.append(f"reminder at {_when(result['remind_at'], zone)}")
        if result["recurrence_rule"]:
            extras.append(f"repeating {result['recurrence_rule']}")
        if result["tags"]:
            extras.append(" ".join(f"#{tag}" for tag in result["tags"]))
        return f"Added {_task_line(result, zone)}" + (f" ({', '.join(extras)})." if extras else ".")
    if name == COMPLETE_TASK:
        return f"Completed '{result['title']}'."
    if name == DELETE_TASK:
        return f"Deleted '{result['title']}'."
    if name == UPDATE_TASK:
        if record["arguments"].get("completed") is False:
            return f"Reopened '{result['title']}'."
        return f"Updated {_task_line(result, zone)}."
    if name == LIST_TASKS:
        tasks = result["results"]
        if not tasks:
            return "No tasks match."
        lines = [
            f"- {_task_line(task, zone)}{' (done)' if task['completed'] else ''}" for task in tasks[:LISTED_IN_REPLY]
        ]
        more = result["count"] - len(lines)
        if more > 0:
            lines.append(f"...and {more} more.")
        count = result["count"]
        return f"{count} task{'s' if count != 1 else ''}:\n" + "\n".join(lines)
    return f"Done: {name}."

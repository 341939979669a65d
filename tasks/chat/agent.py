"""The agent loop: a model behind an OpenAI-compatible chat-completions endpoint calls the task tools.

    result = run_agent([system_message(timezone=..., now=...), {"role": "user", "content": "..."}],
                       executor=execute_tool)

Each round sends the conversation and the tool definitions of ``tasks.chat.tools`` to
``{LLM_BASE_URL}/chat/completions``. When the model answers with ``tool_calls``, each call is
checked against its tool's schema, carried out by ``executor(name, arguments)`` and its result
(or error) appended as a ``tool`` message; then the next round starts. The loop ends when the
model answers without tool calls, or after ``max_steps`` rounds.

The executor is the seam where the task tools plug in (the MCP tools over the service layer):
it returns a JSON-serialisable result, or raises ``ToolError`` for a call that cannot be carried
out, whose message then goes back to the model so that it can correct itself. An endpoint that
cannot be reached, times out, or answers with an error raises ``LLMError`` with a message fit
for the user (never the API key).
"""

import json
import logging
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import httpx
from django.conf import settings

from tasks.chat.tools import ToolError, openai_tools, validate_arguments

logger = logging.getLogger(__name__)


class LLMError(Exception):
    """The language model could not be used; ``tool_calls`` lists what was already carried out."""

    def __init__(self, message, tool_calls=()):
        super().__init__(message)
        self.tool_calls = list(tool_calls)


@dataclass
class AgentResult:
    """The model's final answer, the tool calls carried out on the way, and the whole conversation."""

    reply: str
    # [{"id", "name", "arguments", "result"} or {..., "error"}] in the order they ran.
    tool_calls: list = field(default_factory=list)
    # The messages sent plus the assistant and tool messages of this run, in OpenAI's format.
    messages: list = field(default_factory=list)
    # False when the loop stopped at max_steps while the model still wanted to call tools.
    finished: bool = True


def llm_configured():
    """Whether chat goes to a model (else the built-in interpreter answers)."""
    return bool(settings.LLM_BASE_URL and settings.LLM_MODEL)


def system_message(*, timezone, now):
    """The instructions the model needs: who it serves, the user's time zone and current time."""
    local_now = now.astimezone(ZoneInfo(timezone))
    return {
        "role": "system",
        "content": (
            "You are the assistant of a to-do app. Manage the user's tasks only through the tools. "
            f"The user's time zone is {timezone}; it is now {local_now.isoformat(timespec='minutes')} there "
            f"({local_now:%A}). Read the times the user says in that zone and send them as ISO 8601 with "
            "their offset. Name a task by the task_id that list_tasks or add_task returned; use task_title "
            "only with words of the title the user said. Reopen a task with update_task and completed=false. "
            "After the tool calls, answer in one or two short sentences."
        ),
    }


def run_agent(
    messages,
    *,
    executor,
    base_url=None,
    api_key=None,
    model=None,
    max_steps=None,
    timeout=None,
):
    """Run the conversation ``messages`` to the model's final answer; see the module docstring."""
    base_url = (base_url if base_url is not None else settings.LLM_BASE_URL).rstrip("/")
    api_key = api_key if api_key is not None else settings.LLM_API_KEY
    model = model or settings.LLM_MODEL
    max_steps = max_steps or settings.LLM_MAX_STEPS
    timeout = timeout or settings.LLM_TIMEOUT_SECONDS
    if not base_url or not model:
        raise LLMError("No language model is configured (LLM_BASE_URL and LLM_MODEL).")

    conversation = list(messages)
    carried_out = []
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with httpx.Client(base_url=base_url, headers=headers, timeout=timeout) as client:
        for _ in range(max_steps):
            try:
                message = _complete(client, model, conversation, base_url=base_url, timeout=timeout)
            except LLMError as error:
                error.tool_calls = carried_out
                raise
            tool_calls = message.get("tool_calls") or []
            conversation.append(_assistant_message(message, tool_calls))
            if not tool_calls:
                return AgentResult(message.get("content") or "", carried_out, conversation)
            for tool_call in tool_calls:
                record = _carry_out(tool_call, executor)
                carried_out.append(record)
                content = {"error": record["error"]} if "error" in record else record["result"]
                conversation.append({"role": "tool", "tool_call_id": record["id"], "content": json.dumps(content)})
    return AgentResult(
        f"I stopped after {max_steps} steps without finishing; the changes made so far are listed.",
        carried_out,
        conversation,
        finished=False,
    )


def _complete(client, model, conversation, *, base_url, timeout):
    """One chat-completions round trip: the assistant message of the first choice."""
    body = {"model": model, "messages": conversation, "tools": openai_tools(), "tool_choice": "auto"}
    try:
        response = client.post("/chat/completions", json=body)
    except httpx.TimeoutException:
        raise LLMError(f"The language model at {base_url} did not answer within {timeout:g} s.") from None
    except httpx.HTTPError as error:
        raise LLMError(f"Could not reach the language model at {base_url}: {error}") from None
    if response.status_code >= 400:
        raise LLMError(f"The language model endpoint answered HTTP {response.status_code}: {_error_detail(response)}")
    try:
        message = response.json()["choices"][0]["message"]
        if not isinstance(message, dict):
            raise TypeError("message is not an object")
    except (ValueError, KeyError, IndexError, TypeError) as error:
        logger.warning("unexpected chat-completions response: %.500s", response.text)
        raise LLMError(f"The language model endpoint sent an unexpected response ({error}).") from None
    return message


def _error_detail(response):
    """The provider's own error message (OpenAI's shape: {"error": {"message": ...}}), else the body."""
    try:
        error = response.json().get("error")
        detail = error.get("message") if isinstance(error, dict) else error
    except (ValueError, AttributeError):
        detail = None
    return str(detail or response.text or response.reason_phrase)[:300]


def _assistant_message(message, tool_calls):
    assistant = {"role": "assistant", "content": message.get("content")}
    if tool_calls:
        assistant["tool_calls"] = tool_calls
    return assistant


def _carry_out(tool_call, executor):
    """Check one of the model's tool calls and run it through the executor; errors become records."""
    function = tool_call.get("function") or {}
    record = {"id": tool_call.get("id", ""), "name": function.get("name", ""), "arguments": None}
    try:
        try:
            record["arguments"] = json.loads(function.get("arguments") or "{}")
        except (TypeError, ValueError):
            raise ToolError(f"The arguments of {record['name']} are not valid JSON.") from None
        validate_arguments(record["name"], record["arguments"])
        record["result"] = executor(record["name"], record["arguments"])
    except ToolError as error:
        record["error"] = str(error)
    return record

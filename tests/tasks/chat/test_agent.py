"""The agent loop against a scripted OpenAI-compatible server on localhost.

The server (tests/tasks/chat/scripted_llm.py) speaks the chat-completions protocol and records
every request, so the tests assert exactly what the agent sent. The executor here is a
recording function; tests/tasks/chat/test_services.py runs the real one.
"""

import json
from datetime import UTC, datetime

import pytest

from tasks.chat.agent import LLMError, run_agent, system_message
from tasks.chat.tools import TOOL_NAMES, ToolError, openai_tools
from tests.tasks.chat.scripted_llm import MODEL, ScriptedChatServer, completion, tool_call

API_KEY = "sk-test-123"
USER_MESSAGE = {"role": "user", "content": "add buy milk tomorrow at 5pm and show my tasks"}


class RecordingExecutor:
    """Records each call and answers from a table by tool name: one answer for every call, or a
    list answered in turn; an exception in the table is raised."""

    def __init__(self, answers=None):
        self.calls = []
        self.answers = answers or {}

    def __call__(self, name, arguments):
        self.calls.append((name, arguments))
        answer = self.answers.get(name, {"ok": name})
        if isinstance(answer, list):
            answer = answer.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def run(server, executor, messages=(USER_MESSAGE,), **options):
    return run_agent(list(messages), executor=executor, base_url=server.base_url, api_key=API_KEY, model=MODEL, **options)


ADD_ARGUMENTS = {"title": "buy milk", "due_date": "2026-12-16T17:00:00+01:00"}
TASK = {"id": "6f1c2a9e-4b7d-4c1e-9a8b-3d2e1f0a9b8c", "title": "buy milk", "completed": False}


def test_the_agent_sends_the_tools_runs_the_models_tool_calls_and_returns_its_final_answer():
    script = [
        completion(tool_calls=[tool_call("call_1", "add_task", ADD_ARGUMENTS)]),
        completion("Added 'buy milk' for tomorrow at 17:00."),
    ]
    executor = RecordingExecutor({"add_task": TASK})
    with ScriptedChatServer(script) as server:
        result = run(server, executor)

    assert result.reply == "Added 'buy milk' for tomorrow at 17:00."
    assert result.finished
    assert executor.calls == [("add_task", ADD_ARGUMENTS)]
    assert result.tool_calls == [{"id": "call_1", "name": "add_task", "arguments": ADD_ARGUMENTS, "result": TASK}]

    first, second = server.requests
    for request in (first, second):
        assert request["path"] == "/v1/chat/completions"
        assert request["headers"]["Authorization"] == f"Bearer {API_KEY}"
        assert request["body"]["model"] == MODEL
        assert request["body"]["tools"] == openai_tools()
        assert [tool["function"]["name"] for tool in request["body"]["tools"]] == TOOL_NAMES
    assert first["body"]["messages"] == [USER_MESSAGE]
    assert second["body"]["messages"] == [
        USER_MESSAGE,
        {"role": "assistant", "content": None, "tool_calls": [tool_call("call_1", "add_task", ADD_ARGUMENTS)]},
        {"role": "tool", "tool_call_id": "call_1", "content": json.dumps(TASK)},
    ]
    assert result.messages == second["body"]["messages"] + [
        {"role": "assistant", "content": "Added 'buy milk' for tomorrow at 17:00."}
    ]


def test_several_tool_calls_of_one_answer_run_in_order_and_each_result_answers_its_call():
    script = [
        completion(tool_calls=[
            tool_call("call_a", "complete_task", {"task_title": "buy milk"}),
            tool_call("call_b", "list_tasks", {"completed": False}),
        ]),
        completion("Done; nothing else is open."),
    ]
    executor = RecordingExecutor({"complete_task": TASK, "list_tasks": {"count": 0, "results": []}})
    with ScriptedChatServer(script) as server:
        result = run(server, executor)

    assert executor.calls == [("complete_task", {"task_title": "buy milk"}), ("list_tasks", {"completed": False})]
    tool_messages = [m for m in server.requests[1]["body"]["messages"] if m["role"] == "tool"]
    assert tool_messages == [
        {"role": "tool", "tool_call_id": "call_a", "content": json.dumps(TASK)},
        {"role": "tool", "tool_call_id": "call_b", "content": json.dumps({"count": 0, "results": []})},
    ]
    assert [record["id"] for record in result.tool_calls] == ["call_a", "call_b"]


@pytest.mark.parametrize(
    ("name", "raw_arguments", "error"),
    [
        ("add_task", '{"title": "buy milk"', "not valid JSON"),
        ("add_task", {"title": "buy milk", "priority": 9}, "priority"),
        ("complete_task", {}, "exactly one of task_id and task_title"),
        ("launch_rockets", {}, "There is no tool 'launch_rockets'"),
    ],
    ids=["broken JSON", "schema violation", "no task named", "unknown tool"],
)
def test_a_bad_tool_call_goes_back_to_the_model_as_an_error_without_reaching_the_executor(name, raw_arguments, error):
    script = [completion(tool_calls=[tool_call("call_1", name, raw_arguments)]), completion("Sorry, that failed.")]
    executor = RecordingExecutor()
    with ScriptedChatServer(script) as server:
        result = run(server, executor)

    assert executor.calls == []
    tool_message = server.requests[1]["body"]["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["tool_call_id"] == "call_1"
    assert error in json.loads(tool_message["content"])["error"]
    assert error in result.tool_calls[0]["error"]
    assert result.reply == "Sorry, that failed."


def test_an_error_of_the_executor_goes_back_to_the_model_which_can_correct_itself():
    ambiguous = ToolError("Several tasks match 'milk': 'buy milk' (1); 'milk the cow' (2). Name the task by its task_id.")
    script = [
        completion(tool_calls=[tool_call("call_1", "delete_task", {"task_title": "milk"})]),
        completion(tool_calls=[tool_call("call_2", "delete_task", {"task_id": TASK["id"]})]),
        completion("Deleted 'buy milk'."),
    ]
    executor = RecordingExecutor({"delete_task": [ambiguous, TASK]})
    with ScriptedChatServer(script) as server:
        result = run(server, executor)

    assert json.loads(server.requests[1]["body"]["messages"][-1]["content"]) == {"error": str(ambiguous)}
    assert executor.calls == [("delete_task", {"task_title": "milk"}), ("delete_task", {"task_id": TASK["id"]})]
    assert result.reply == "Deleted 'buy milk'."
    assert [("error" in record, "result" in record) for record in result.tool_calls] == [(True, False), (False, True)]


def test_the_loop_stops_after_max_steps_when_the_model_keeps_calling_tools():
    script = [completion(tool_calls=[tool_call(f"call_{n}", "list_tasks", {})]) for n in range(5)]
    executor = RecordingExecutor()
    with ScriptedChatServer(script) as server:
        result = run(server, executor, max_steps=3)

    assert len(server.requests) == 3
    assert len(executor.calls) == 3
    assert not result.finished
    assert "stopped after 3 steps" in result.reply


def test_an_http_error_of_the_endpoint_raises_a_clear_error_with_the_providers_message():
    script = [(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}})]
    with ScriptedChatServer(script) as server, pytest.raises(LLMError) as raised:
        run(server, RecordingExecutor())
    assert str(raised.value) == "The language model endpoint answered HTTP 401: Incorrect API key provided"
    assert API_KEY not in str(raised.value)


def test_an_error_after_tool_calls_still_reports_the_calls_that_were_carried_out():
    script = [
        completion(tool_calls=[tool_call("call_1", "add_task", ADD_ARGUMENTS)]),
        (503, "upstream overloaded"),
    ]
    executor = RecordingExecutor({"add_task": TASK})
    with ScriptedChatServer(script) as server, pytest.raises(LLMError, match="HTTP 503: upstream overloaded") as raised:
        run(server, executor)
    assert [record["result"] for record in raised.value.tool_calls] == [TASK]


def test_an_endpoint_that_does_not_answer_in_time_raises_a_timeout_error():
    with ScriptedChatServer(["hang"]) as server, pytest.raises(LLMError, match="did not answer within 0.5 s"):
        run(server, RecordingExecutor(), timeout=0.5)


def test_an_endpoint_that_cannot_be_reached_raises_a_clear_error(free_port):
    base_url = f"http://127.0.0.1:{free_port}/v1"
    with pytest.raises(LLMError, match=f"Could not reach the language model at {base_url}"):
        run_agent([USER_MESSAGE], executor=RecordingExecutor(), base_url=base_url, api_key=API_KEY, model=MODEL)


@pytest.mark.parametrize("body", ["not json", {"choices": []}, {"id": "x"}], ids=["not JSON", "no choice", "no choices"])
def test_a_response_outside_the_protocol_raises_a_clear_error(body):
    with ScriptedChatServer([(200, body)]) as server, pytest.raises(LLMError, match="unexpected response"):
        run(server, RecordingExecutor())


def test_the_endpoint_model_and_key_come_from_the_settings(settings):
    with ScriptedChatServer([completion("Hello!")]) as server:
        settings.LLM_BASE_URL = server.base_url
        settings.LLM_API_KEY = "sk-from-settings"
        settings.LLM_MODEL = "model-from-settings"
        result = run_agent([USER_MESSAGE], executor=RecordingExecutor())

    assert result.reply == "Hello!"
    (request,) = server.requests
    assert request["headers"]["Authorization"] == "Bearer sk-from-settings"
    assert request["body"]["model"] == "model-from-settings"


def test_without_an_api_key_no_authorization_header_is_sent():
    with ScriptedChatServer([completion("Hi")]) as server:
        run_agent([USER_MESSAGE], executor=RecordingExecutor(), base_url=server.base_url, api_key="", model=MODEL)
    assert "Authorization" not in server.requests[0]["headers"]


def test_without_a_configured_model_the_agent_refuses_clearly(settings):
    settings.LLM_BASE_URL = ""
    settings.LLM_MODEL = ""
    with pytest.raises(LLMError, match="No language model is configured"):
        run_agent([USER_MESSAGE], executor=RecordingExecutor())


def test_the_system_message_gives_the_model_the_users_time_zone_and_local_time():
    message = system_message(timezone="Asia/Tokyo", now=datetime(2026, 12, 15, 10, 30, tzinfo=UTC))
    assert message["role"] == "system"
    assert "Asia/Tokyo" in message["content"]
    assert "2026-12-15T19:30+09:00 there (Tuesday)" in message["content"]

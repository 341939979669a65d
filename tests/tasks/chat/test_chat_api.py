"""POST /api/chat/: conversations per user, the built-in interpreter, and the agent loop against a
scripted OpenAI-compatible server; every tool call goes through the one executor."""

import json
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from rest_framework.test import APIClient

from events.models import OutboxEvent
from tasks.chat.models import ChatMessage, Conversation
from tasks.chat.services import HISTORY_SHOWN
from tasks.chat.tools import openai_tools
from tasks.models import Task, User
from tests.tasks.chat.scripted_llm import MODEL, ScriptedChatServer, completion, tool_call

pytestmark = pytest.mark.django_db


@pytest.fixture
def interpreter(settings):
    settings.LLM_BASE_URL = ""
    settings.LLM_MODEL = ""


def chat(client, message, conversation_id=None, status=200):
    body = {"message": message}
    if conversation_id:
        body["conversation_id"] = conversation_id
    response = client.post("/api/chat/", body, format="json")
    assert response.status_code == status, response.content
    return response.json()


# ------------------------------------------------------------------------------ built-in interpreter


def test_the_interpreter_adds_a_task_and_replies_with_its_due_time_in_the_users_zone(alice, interpreter):
    answer = chat(alice, "add buy milk on Dec 16 2027 at 5pm #shopping")

    task = Task.objects.get()
    assert (task.title, task.tags) == ("buy milk", ["shopping"])
    assert task.due_date == datetime(2027, 12, 16, 16, 0, tzinfo=UTC)  # 17:00 in Paris
    assert answer["reply"] == "Added 'buy milk' for Thu 16 Dec 17:00 (#shopping)."
    [call] = answer["tool_calls"]
    assert call["name"] == "add_task" and call["result"]["id"] == str(task.id)
    assert Conversation.objects.get(pk=answer["conversation_id"]).messages.count() == 2
    assert {json.loads(row.payload)["metadata"]["source"] for row in OutboxEvent.objects.all()} == {"chat-api"}


def test_the_interpreter_lists_completes_by_title_and_reopens(alice, interpreter):
    conversation = chat(alice, "add call mom")["conversation_id"]
    chat(alice, "add buy bread", conversation)

    listed = chat(alice, "show my tasks", conversation)
    assert listed["reply"].startswith("2 tasks:\n")
    assert "- 'call mom'" in listed["reply"] and "- 'buy bread'" in listed["reply"]

    completed = chat(alice, "mark call mom as done", conversation)
    assert completed["reply"] == "Completed 'call mom'."
    assert Task.objects.get(title="call mom").completed

    assert chat(alice, "reopen call mom", conversation)["reply"] == "Reopened 'call mom'."
    assert not Task.objects.get(title="call mom").completed
    assert list(ChatMessage.objects.filter(conversation_id=conversation).values_list("role", flat=True)) == [
        "user", "assistant"
    ] * 5


def test_a_tool_error_is_said_plainly_in_the_reply(alice, interpreter):
    answer = chat(alice, "mark the dentist as done")
    assert answer["reply"] == "Sorry, I couldn't do that: No task has a title matching 'dentist'."
    assert answer["tool_calls"] == [{
        "id": "call_1", "name": "complete_task", "arguments": {"task_title": "dentist"},
        "error": "No task has a title matching 'dentist'.",
    }]


def test_a_message_the_interpreter_does_not_understand_gets_examples_and_no_tool_call(alice, interpreter):
    answer = chat(alice, "what is the meaning of life")
    assert answer["reply"].startswith("Sorry, I did not understand 'what is the meaning of life'.")
    assert '"add buy milk tomorrow at 5pm #shopping"' in answer["reply"]
    assert answer["tool_calls"] == []
    assert not Task.objects.exists()


# -------------------------------------------------------------------------------------- conversations


def test_another_users_conversation_is_not_found_and_gets_no_message(alice, bob, interpreter):
    conversation = chat(alice, "add call mom")["conversation_id"]

    chat(bob, "show my tasks", conversation, status=404)
    chat(bob, "show my tasks", str(uuid.uuid4()), status=404)
    assert ChatMessage.objects.filter(conversation_id=conversation).count() == 2


@pytest.mark.parametrize("body", [{}, {"message": ""}, {"message": 42}, {"message": "hi", "conversation_id": "nope"}])
def test_a_bad_request_is_a_400_naming_the_field(alice, interpreter, body):
    response = alice.post("/api/chat/", body, format="json")
    assert response.status_code == 400
    assert set(response.json()) <= {"message", "conversation_id"} and response.json()


def test_chat_needs_authentication():
    assert APIClient().post("/api/chat/", {"message": "show my tasks"}, format="json").status_code == 401


# ----------------------------------------------------------------------------------------- agent loop


@pytest.fixture
def model(settings):
    """Point the settings at a scripted server; the test sets its script."""

    def configure(script):
        server = ScriptedChatServer(script)
        settings.LLM_BASE_URL = server.base_url
        settings.LLM_MODEL = MODEL
        settings.LLM_API_KEY = "sk-test"
        return server

    return configure


def test_with_a_model_configured_the_agent_runs_its_tool_calls_through_the_executor(alice, model):
    server = model([
        completion(tool_calls=[tool_call("call_1", "add_task", {"title": "buy milk", "due_date": "2026-12-16T17:00:00+01:00"})]),
        completion("Added 'buy milk' for Wednesday 17:00."),
        completion("You have one task: buy milk."),
    ])
    with server:
        first = chat(alice, "add buy milk on wednesday at 5pm")
        second = chat(alice, "what do I have?", first["conversation_id"])

    task = Task.objects.get()
    assert task.due_date == datetime(2026, 12, 16, 16, 0, tzinfo=UTC)
    assert first["reply"] == "Added 'buy milk' for Wednesday 17:00."
    assert first["tool_calls"][0]["result"]["id"] == str(task.id)
    assert second == {"conversation_id": first["conversation_id"], "reply": "You have one task: buy milk.", "tool_calls": []}

    # The model saw the tools, the user's zone, and on the second turn the conversation so far.
    request = server.requests[2]["body"]
    assert request["tools"] == openai_tools()
    system, *history = request["messages"]
    assert system["role"] == "system" and "Europe/Paris" in system["content"]
    assert history == [
        {"role": "user", "content": "add buy milk on wednesday at 5pm"},
        {"role": "assistant", "content": "Added 'buy milk' for Wednesday 17:00."},
        {"role": "user", "content": "what do I have?"},
    ]
    assert {json.loads(row.payload)["metadata"]["source"] for row in OutboxEvent.objects.all()} == {"chat-api"}


def test_the_models_tool_calls_reach_only_the_callers_tasks(alice, bob, interpreter, model):
    chat(bob, "add bob's secret")
    bobs = Task.objects.get()
    server = model([
        completion(tool_calls=[tool_call("call_1", "delete_task", {"task_id": str(bobs.id)})]),
        completion("I could not find that task."),
    ])
    with server:
        answer = chat(alice, "delete that task")

    assert answer["tool_calls"][0]["error"] == f"There is no such task: {bobs.id}."
    assert json.loads(server.requests[1]["body"]["messages"][-1]["content"]) == {"error": f"There is no such task: {bobs.id}."}
    assert Task.objects.filter(pk=bobs.id).exists()


def test_a_failing_model_is_a_502_with_a_clear_message_not_a_500(alice, model):
    with model([(503, {"error": {"message": "overloaded"}})]):
        response = alice.post("/api/chat/", {"message": "show my tasks"}, format="json")

    assert response.status_code == 502
    assert response.json() == {"detail": "The language model endpoint answered HTTP 503: overloaded", "tool_calls": []}


def test_the_interpreter_does_the_issues_requests(alice, interpreter):
    """Issue 13, item 3: tags filter, "the 1st of every month", "high" is P2, sorted by due time,
    and a moved appointment keeps its reminder an hour before."""
    conversation = chat(alice, "add slides #work")["conversation_id"]
    chat(alice, "add groceries #home", conversation)
    tagged = chat(alice, "show tasks tagged work", conversation)
    assert tagged["reply"] == "1 task:\n- 'slides'"

    rent = chat(alice, "add pay rent on the 1st of every month", conversation)["tool_calls"][0]["result"]
    assert rent["recurrence_rule"] == "FREQ=MONTHLY;BYMONTHDAY=1"
    due = datetime.fromisoformat(rent["due_date"].replace("Z", "+00:00"))
    assert due > datetime.now(UTC) and due.astimezone(ZoneInfo("Europe/Paris")).day == 1

    assert chat(alice, "add water the plants high priority", conversation)["tool_calls"][0]["result"]["priority"] == 2

    chat(alice, "add later task on Dec 20 2030 at 5pm", conversation)
    chat(alice, "add sooner task on Dec 18 2030 at 5pm", conversation)
    listed = chat(alice, "show tasks due on Dec 18 2030", conversation)
    assert listed["tool_calls"][0]["arguments"]["ordering"] == "due_date"

    chat(alice, "add dentist appointment on Dec 17 2030 at 10am, remind me 1 hour before", conversation)
    moved = chat(alice, "move the dentist appointment to Dec 20 2030 at 2pm", conversation)["tool_calls"][0]["result"]
    assert (moved["due_date"], moved["remind_at"]) == ("2030-12-20T13:00:00Z", "2030-12-20T12:00:00Z")


def test_what_is_due_comes_back_soonest_first(alice, interpreter):
    now = datetime.now(UTC)
    for hours in (1, 3, 2):  # created in another order than their due times
        due = (now - timedelta(hours=hours)).isoformat()
        assert alice.post("/api/tasks/", {"title": f"{hours} hours ago", "due_date": due}, format="json").status_code == 201

    answer = chat(alice, "show overdue tasks")
    assert [task["title"] for task in answer["tool_calls"][0]["result"]["results"]] == ["3 hours ago", "2 hours ago", "1 hours ago"]
    assert answer["reply"].startswith("3 tasks:\n- '3 hours ago'")


def test_a_conversation_is_read_back_in_order_for_its_user_only(alice, bob, interpreter):
    conversation = chat(alice, "add call mom")["conversation_id"]
    chat(alice, "show my tasks", conversation)

    response = alice.get(f"/api/chat/{conversation}/")
    assert response.status_code == 200
    history = response.json()
    assert history["conversation_id"] == conversation and history["has_more"] is False
    assert [(m["role"], m["content"]) for m in history["messages"]] == [
        ("user", "add call mom"),
        ("assistant", "Added 'call mom'."),
        ("user", "show my tasks"),
        ("assistant", "1 task:\n- 'call mom'"),
    ]
    assert history["messages"][1]["tool_calls"][0]["name"] == "add_task"
    assert bob.get(f"/api/chat/{conversation}/").status_code == 404
    assert alice.get(f"/api/chat/{uuid.uuid4()}/").status_code == 404
    assert APIClient().get(f"/api/chat/{conversation}/").status_code == 401


def test_a_long_conversation_gives_back_its_latest_messages(alice, interpreter, settings):
    conversation = Conversation.objects.create(user=User.objects.get(username="alice"))
    ChatMessage.objects.bulk_create(
        ChatMessage(conversation=conversation, role="user", content=f"message {n}") for n in range(HISTORY_SHOWN + 5)
    )
    history = alice.get(f"/api/chat/{conversation.id}/").json()
    assert history["has_more"] is True
    assert len(history["messages"]) == HISTORY_SHOWN
    assert (history["messages"][0]["content"], history["messages"][-1]["content"]) == ("message 5", f"message {HISTORY_SHOWN + 4}")

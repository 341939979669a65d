"""The MCP server at /mcp/, as a client sees it: the real ASGI server (uvicorn) and the `mcp` SDK's
streamable-HTTP client, with the outbox relay publishing the tools' events to the real Kafka."""

import asyncio
import json
from contextlib import asynccontextmanager

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from events.topics import TASK_EVENTS
from tasks.accounts.services import user_register
from tasks.accounts.tokens import issue
from tasks.chat.tools import TOOLS
from tasks.models import Task
from tasks.accounts.services import user_register
from tasks.accounts.tokens import issue
from testing.kafka import read_topic
from testing.processes import Process, manage, worker_environment

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "a-long-passphrase"


@pytest.fixture
def server(web_server, tmp_path):
    """The web server (uvicorn) on this test's database, plus the outbox relay."""
    relay = Process(manage("relay_outbox", "--poll-interval", "0.2"), tmp_path / "relay.log", worker_environment()).start()
    try:
        yield web_server
    finally:
        relay.stop()


def registered(username):
    user = user_register(username=username, password=PASSWORD, timezone="Europe/Paris")
    return user, issue(user)


@asynccontextmanager
async def mcp_client(url, token):
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60)
    async with http, Client(streamable_http_client(f"{url}/mcp/", http_client=http)) as client:
        yield client


def payload(result):
    assert not result.is_error, result.content[0].text
    return json.loads(result.content[0].text)


def test_the_tools_are_listed_with_the_names_descriptions_and_schemas_of_the_one_definition(server):
    _, token = registered("alice")

    async def scenario():
        async with mcp_client(server, token) as client:
            return (await client.list_tools()).tools

    tools = asyncio.run(scenario())
    assert [(tool.name, tool.description, tool.input_schema) for tool in tools] == [
        (tool["name"], tool["description"], tool["input_schema"]) for tool in TOOLS
    ]


def test_each_tool_acts_on_the_users_tasks_and_its_events_reach_kafka_with_source_chat_api(server):
    user, token = registered("alice")

    async def scenario():
        async with mcp_client(server, token) as client:
            added = payload(await client.call_tool(
                "add_task",
                {"title": "buy milk", "due_date": "2026-12-16T17:00:00", "tags": ["shopping"], "priority": 2},
            ))
            other = payload(await client.call_tool("add_task", {"title": "call mom"}))
            listed = payload(await client.call_tool("list_tasks", {"tag": ["shopping"]}))
            updated = payload(await client.call_tool("update_task", {"task_id": added["id"], "title": "buy oat milk"}))
            completed = payload(await client.call_tool("complete_task", {"task_title": "oat milk"}))
            reopened = payload(await client.call_tool("update_task", {"task_title": "oat milk", "completed": False}))
            deleted = payload(await client.call_tool("delete_task", {"task_id": other["id"]}))
            return added, listed, updated, completed, reopened, deleted, other

    added, listed, updated, completed, reopened, deleted, other = asyncio.run(scenario())

    # A time without an offset is read in the user's time zone (Paris, UTC+1 in December).
    assert added["due_date"] == "2026-12-16T16:00:00Z"
    assert added["user_id"] == str(user.id) and added["tags"] == ["shopping"] and added["priority"] == 2
    assert listed["count"] == 1 and [task["id"] for task in listed["results"]] == [added["id"]]
    assert updated["title"] == "buy oat milk"
    assert completed["completed"] is True and completed["id"] == added["id"]
    assert reopened["completed"] is False
    assert deleted["id"] == other["id"]
    assert list(Task.objects.filter(user=user).values_list("title", "completed")) == [("buy oat milk", False)]

    expected = [
        ("task.created", added["id"]), ("task.created", other["id"]), ("task.updated", added["id"]),
        ("task.completed", added["id"]), ("task.updated", added["id"]), ("task.deleted", other["id"]),
    ]
    # The topic is shared by the whole test run: only this test's tasks count.
    ours = {added["id"], other["id"]}

    def of_ours(messages):
        events = (json.loads(message["value"]) for message in messages)
        return [event for event in events if event["data"]["task_id"] in ours]

    events = of_ours(read_topic(TASK_EVENTS, until=lambda found: len(of_ours(found)) >= len(expected)))
    assert sorted((event["event_type"], event["data"]["task_id"]) for event in events) == sorted(expected)
    assert {event["metadata"]["source"] for event in events} == {"chat-api"}


def test_a_users_token_never_reaches_another_users_tasks(server):
    bob, bob_token = registered("bob")
    _, alice_token = registered("alice")

    async def scenario():
        async with mcp_client(server, bob_token) as client:
            bobs = payload(await client.call_tool("add_task", {"title": "bob's secret plan"}))
        async with mcp_client(server, alice_token) as client:
            return bobs, {
                "list": await client.call_tool("list_tasks", {"search": "secret"}),
                "complete by id": await client.call_tool("complete_task", {"task_id": bobs["id"]}),
                "update by id": await client.call_tool("update_task", {"task_id": bobs["id"], "title": "mine"}),
                "delete by id": await client.call_tool("delete_task", {"task_id": bobs["id"]}),
                "delete by title": await client.call_tool("delete_task", {"task_title": "secret plan"}),
            }

    bobs, answers = asyncio.run(scenario())
    assert payload(answers.pop("list")) == {"count": 0, "results": []}
    for what, answer in answers.items():
        assert answer.is_error, what
        text = answer.content[0].text
        assert "no such task" in text.lower() or "no task has a title" in text.lower(), (what, text)
        assert "bob" not in text, (what, text)
    task = Task.objects.get(pk=bobs["id"])
    assert (task.user_id, task.title, task.completed) == (bob.id, "bob's secret plan", False)


@pytest.mark.parametrize(
    ("name", "arguments", "message"),
    [
        ("add_task", {}, "'title' is a required property"),
        ("add_task", {"title": "x", "priority": 9}, "priority"),
        ("add_task", {"title": "x", "due_date": "next tuesday"}, "due_date"),
        ("add_task", {"title": "x", "remind_at": "2026-12-16T17:00:00Z"}, "remind_at: A reminder needs a due_date"),
        ("complete_task", {"task_title": "nothing like this"}, "No task has a title matching"),
        ("update_task", {"title": "renamed"}, "exactly one of task_id and task_title"),
        ("reopen_task", {"task_title": "x"}, "There is no tool 'reopen_task'"),
    ],
)
def test_bad_arguments_come_back_as_tool_errors_that_say_what_is_wrong(server, name, arguments, message):
    _, token = registered("alice")

    async def scenario():
        async with mcp_client(server, token) as client:
            return await client.call_tool(name, arguments)

    result = asyncio.run(scenario())
    assert result.is_error
    assert message in result.content[0].text
    assert not Task.objects.exists()


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Token {token}"}, {"Authorization": "Bearer"}],
    ids=["missing", "unknown token", "wrong scheme", "no token"],
)
def test_a_request_without_a_valid_bearer_token_is_refused_with_401(server, headers):
    _, token = registered("alice")
    headers = {name: value.format(token=token) for name, value in headers.items()}
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    response = httpx.post(
        f"{server}/mcp/", json=body, headers={**headers, "Accept": "application/json, text/event-stream"}, timeout=30
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")

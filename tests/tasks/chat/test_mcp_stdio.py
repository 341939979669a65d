"""`manage.py mcp_stdio --user <name>` as a desktop MCP client starts it: the SDK's stdio client."""

import asyncio
import subprocess
import sys

import pytest
from mcp import Client, StdioServerParameters

from tasks.accounts.services import user_register
from tasks.chat.tools import TOOL_NAMES
from tasks.models import Task
from tasks.accounts.services import user_register
from testing.processes import REPO, worker_environment

pytestmark = pytest.mark.django_db(transaction=True)


def server_parameters(username):
    return StdioServerParameters(
        command=sys.executable, args=["manage.py", "mcp_stdio", "--user", username], cwd=str(REPO),
        env=worker_environment(),
    )


@pytest.mark.e2e  # starts a server process in its body
def test_a_stdio_client_lists_the_tools_and_acts_for_the_named_user_only():
    alice = user_register(username="alice", password="a-long-passphrase")
    bob = user_register(username="bob", password="a-long-passphrase")
    Task.objects.create(user=bob, title="bob's task")

    async def scenario():
        async with Client(server_parameters("alice"), read_timeout_seconds=60) as client:
            tools = [tool.name for tool in (await client.list_tools()).tools]
            added = await client.call_tool("add_task", {"title": "buy milk"})
            listed = await client.call_tool("list_tasks", {})
            return tools, added, listed

    tools, added, listed = asyncio.run(scenario())

    assert tools == TOOL_NAMES
    assert not added.is_error and added.structured_content["title"] == "buy milk"
    assert listed.structured_content["count"] == 1
    assert Task.objects.get(title="buy milk").user_id == alice.id


@pytest.mark.e2e  # starts a server process in its body
def test_an_unknown_user_is_refused_before_serving():
    result = subprocess.run(
        [sys.executable, "manage.py", "mcp_stdio", "--user", "nobody"], cwd=REPO, env=worker_environment(),
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    assert result.returncode != 0
    assert "There is no active user 'nobody'." in result.stderr

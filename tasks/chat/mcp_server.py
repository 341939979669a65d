"""The task tools as an MCP server (official ``mcp`` SDK), over streamable HTTP and over stdio.

- HTTP: ``mcp_http_app`` is mounted at ``/mcp/`` by todo_project/asgi.py. Every request must
  carry ``Authorization: Bearer <API token>`` (the DRF token of ``POST /api/auth/token/``),
  else 401. The server is stateless (a fresh MCP transport per request, no session to hijack):
  each tool call acts for the token's user. The SDK's session manager needs a running task
  group: ``mcp_lifespan()`` is entered by the ASGI lifespan (see asgi.py).
- stdio: ``run_stdio(user)`` serves one user, for desktop MCP clients (``manage.py mcp_stdio``).

Tools, descriptions and schemas are those of ``tasks.chat.tools``; every call goes through
``tasks.chat.executor.execute_tool``. A ``ToolError`` comes back as an MCP tool error
(``isError``) with its message; results are the contract's task objects as JSON text and as
structured content.
"""

import contextlib
import json
import logging

import mcp_types as types
from channels.db import database_sync_to_async
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from tasks.accounts.auth import user_of_token
from tasks.chat.executor import SOURCE, execute_tool
from tasks.chat.tools import TOOLS, ToolError
from tasks.events import EventContext

logger = logging.getLogger(__name__)

SERVER_NAME = "todo-tasks"
# Where the authenticated user travels from the HTTP middleware to the tool handler.
USER_SCOPE_KEY = "todo_user"


def tool_result(result):
    return types.CallToolResult(
        content=[types.TextContent(text=json.dumps(result))],
        structured_content=result,
    )


def tool_error(message):
    return types.CallToolResult(content=[types.TextContent(text=message)], is_error=True)


def build_server(user_of):
    """An MCP server of the task tools; ``user_of(ctx)`` says for whom a call acts."""

    async def list_tools(ctx, params):
        return types.ListToolsResult(
            tools=[
                types.Tool(name=tool["name"], description=tool["description"], input_schema=tool["input_schema"])
                for tool in TOOLS
            ]
        )

    async def call_tool(ctx, params):
        user = user_of(ctx)
        context = EventContext.new(SOURCE)
        try:
            result = await _execute(user, params.name, params.arguments or {}, context=context)
        except ToolError as error:
            return tool_error(str(error))
        except Exception:  # a bug must not crash the session: the client gets a tool error, we get the trace
            logger.exception("MCP tool %s failed (correlation id %s)", params.name, context.correlation_id)
            return tool_error(f"The tool {params.name} failed unexpectedly (correlation id {context.correlation_id}).")
        return tool_result(result)

    return Server(SERVER_NAME, on_list_tools=list_tools, on_call_tool=call_tool)


# Django's ORM is synchronous: the executor runs in a thread, with stale connections closed.
_execute = database_sync_to_async(execute_tool)


# --- streamable HTTP -------------------------------------------------------------------------

_http_server = build_server(lambda ctx: ctx.request.scope[USER_SCOPE_KEY])
_session_manager = None


@contextlib.asynccontextmanager
async def mcp_lifespan():
    """Run the SDK's session manager (its task group) while the ASGI server runs."""
    global _session_manager
    _session_manager = StreamableHTTPSessionManager(app=_http_server, stateless=True, json_response=True)
    async with _session_manager.run():
        yield
    _session_manager = None


def _bearer(scope):
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
    return None


async def _send_json(send, status, body, headers=()):
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def mcp_http_app(scope, receive, send):
    """ASGI app of ``/mcp/``: bearer-token authentication, then the SDK's streamable HTTP transport."""
    key = _bearer(scope)
    user = await user_of_token(key) if key else None
    if user is None:
        await _send_json(
            send,
            401,
            {"detail": "Authentication required: send Authorization: Bearer <API token>."},
            headers=[(b"www-authenticate", b'Bearer realm="mcp"')],
        )
        return
    if _session_manager is None:
        await _send_json(send, 503, {"detail": "The MCP server is not running (the ASGI lifespan did not start)."})
        return
    await _session_manager.handle_request({**scope, USER_SCOPE_KEY: user}, receive, send)


# --- stdio -----------------------------------------------------------------------------------


async def run_stdio(user):
    """Serve the task tools for ``user`` on stdin/stdout until the client closes them."""
    from mcp.server.stdio import stdio_server

    server = build_server(lambda ctx: user)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())

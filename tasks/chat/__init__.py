"""The assistant: chat (POST /api/chat/ and its conversations), the task tools, the MCP server
(HTTP and stdio), the built-in interpreter and the quick-add parser built on it.

Every tool call acts through the task domain's services; MCP requests are signed in with the
account tokens (tasks.accounts.auth).

May import: events, tasks, tasks.accounts.
"""

"""Serve the task tools over MCP's stdio transport for one user, for desktop MCP clients.

    python manage.py mcp_stdio --user alice

stdout carries only the protocol; logs go to stderr.
"""

import asyncio

from django.core.management.base import BaseCommand, CommandError

from tasks.chat.mcp_server import run_stdio
from tasks.models import User


class Command(BaseCommand):
    help = "Serve the task tools (add_task, list_tasks, ...) as an MCP server on stdin/stdout for one user."

    def add_arguments(self, parser):
        parser.add_argument("--user", required=True, help="username whose tasks the tools act on")

    def handle(self, *args, user, **options):
        try:
            account = User.objects.get(username=user, is_active=True)
        except User.DoesNotExist:
            raise CommandError(f"There is no active user {user!r}.") from None
        asyncio.run(run_stdio(account))

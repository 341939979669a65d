"""The chat's tables: a user's conversations with the assistant and their messages.

They were created by the tasks app (tasks/migrations/0005_conversations.py) and keep its table
names, so that a database migrated before the chat became its own app keeps its conversations:
chat/migrations/0001 only takes them over in Django's state (see tasks/migrations/0011).
"""

import uuid

from django.conf import settings
from django.db import models


class Conversation(models.Model):
    """A chat of one user with the assistant (POST /api/chat/); its messages are the history."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "tasks_conversation"
        indexes = [models.Index(fields=["user", "-updated_at"], name="conversation_user_updated")]

    def __str__(self):
        return f"conversation {self.id} of {self.user_id}"


class ChatMessage(models.Model):
    """One turn of a conversation: what the user said, or the assistant's reply with its tool calls."""

    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    id = models.BigAutoField(primary_key=True)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField()
    # The assistant's tool calls: [{"id", "name", "arguments", "result"} or {..., "error"}].
    tool_calls = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "tasks_chatmessage"
        ordering = ["id"]

    def __str__(self):
        return f"{self.role}: {self.content[:50]}"

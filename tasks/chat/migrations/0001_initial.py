"""The chat's models, taken over from the tasks app with their tables (state only).

Their tables were created by tasks/migrations/0005_conversations.py and keep their names
(``db_table``), so nothing happens in the database: an existing one keeps every conversation.
tasks/migrations/0011 then drops the models from the tasks app's state.
"""

import uuid

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("tasks", "0010_apitoken"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Conversation",
                    fields=[
                        ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                        (
                            "user",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="conversations",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                    ],
                    options={
                        "db_table": "tasks_conversation",
                        "indexes": [models.Index(fields=["user", "-updated_at"], name="conversation_user_updated")],
                    },
                ),
                migrations.CreateModel(
                    name="ChatMessage",
                    fields=[
                        ("id", models.BigAutoField(primary_key=True, serialize=False)),
                        ("role", models.CharField(choices=[("user", "User"), ("assistant", "Assistant")], max_length=16)),
                        ("content", models.TextField()),
                        ("tool_calls", models.JSONField(blank=True, default=list)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        (
                            "conversation",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE, related_name="messages", to="chat.conversation"
                            ),
                        ),
                    ],
                    options={"db_table": "tasks_chatmessage", "ordering": ["id"]},
                ),
            ],
            database_operations=[],
        ),
    ]

"""The models' migrations: complete, and the chat models' move to tasks/chat loses nothing.

Conversation and ChatMessage were models of the tasks app until the chat became an app of its
own (tasks/chat/migrations/0001, tasks/migrations/0011). A database migrated with the code before
the move is migrated back to that point here, given a conversation, its messages and a permission
on it, and migrated forward again: the rows are still there under the chat's models, and the
content type (with the permission granted on it) now carries the chat's label.
"""

import pytest
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from tasks.chat.models import ChatMessage, Conversation
from tasks.models import User

# The last migrations before the chat models moved: what today's databases are at.
BEFORE_THE_MOVE = [("tasks", "0010_apitoken"), ("chat", None)]


def migrate(targets):
    """Migrate to ``targets``; the models as they were there (an app at None has none)."""
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return executor.loader.project_state([node for node in targets if node[1] is not None]).apps


def latest():
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


@pytest.mark.django_db
def test_every_model_change_has_its_migration():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)  # SystemExit(1) when one is missing


@pytest.mark.django_db(transaction=True)
def test_a_database_from_before_the_move_keeps_its_conversations_messages_and_permissions():
    old = migrate(BEFORE_THE_MOVE)
    try:
        old_user = old.get_model("tasks", "User").objects.create(username="ada", password="!")
        conversation = old.get_model("tasks", "Conversation").objects.create(user=old_user)
        old.get_model("tasks", "ChatMessage").objects.bulk_create(
            [
                old.get_model("tasks", "ChatMessage")(conversation=conversation, role="user", content="add buy milk"),
                old.get_model("tasks", "ChatMessage")(conversation=conversation, role="assistant", content="Added."),
            ]
        )
        old_content_types = old.get_model("contenttypes", "ContentType").objects
        content_type, _ = old_content_types.get_or_create(app_label="tasks", model="conversation")
        permission, _ = old.get_model("auth", "Permission").objects.get_or_create(
            content_type=content_type, codename="view_conversation", defaults={"name": "Can view conversation"}
        )
        old_user.user_permissions.add(permission)
    finally:
        migrate(latest())

    ContentType.objects.clear_cache()
    moved = Conversation.objects.get(pk=conversation.pk)
    assert moved.user == User.objects.get(username="ada")
    assert list(moved.messages.values_list("role", "content")) == [("user", "add buy milk"), ("assistant", "Added.")]
    assert ChatMessage._meta.db_table == "tasks_chatmessage" and Conversation._meta.db_table == "tasks_conversation"
    relabelled = ContentType.objects.get_for_model(Conversation)
    assert (relabelled.pk, relabelled.app_label) == (content_type.pk, "chat")
    assert not ContentType.objects.filter(app_label="tasks", model__in=["conversation", "chatmessage"]).exists()
    assert Permission.objects.get(pk=permission.pk).content_type_id == content_type.pk
    assert User.objects.get(username="ada").has_perm("chat.view_conversation")

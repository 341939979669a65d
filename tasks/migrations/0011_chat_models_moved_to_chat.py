"""Conversation and ChatMessage belong to the chat app now (tasks/chat/models.py).

State only: their tables keep their names, chat/migrations/0001 has taken them over. Their
content types are renamed to the chat app's label, so that the permissions granted on them
(and anything else that points at a content type) follow the models instead of going stale.
"""

from django.db import migrations

MOVED = ("conversation", "chatmessage")


def relabel_content_types(from_label, to_label):
    def relabel(apps, schema_editor):
        content_types = apps.get_model("contenttypes", "ContentType").objects.using(schema_editor.connection.alias)
        for model in MOVED:
            if not content_types.filter(app_label=to_label, model=model).exists():
                content_types.filter(app_label=from_label, model=model).update(app_label=to_label)

    return relabel


class Migration(migrations.Migration):

    dependencies = [
        ("tasks", "0010_apitoken"),
        ("chat", "0001_initial"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="ChatMessage"),
                migrations.DeleteModel(name="Conversation"),
            ],
            database_operations=[],
        ),
        migrations.RunPython(relabel_content_types("tasks", "chat"), relabel_content_types("chat", "tasks")),
    ]

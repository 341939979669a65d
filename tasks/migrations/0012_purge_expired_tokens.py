"""Hourly on celery beat's schedule: delete expired API tokens (requests no longer sweep them)."""

from django.db import migrations

from events.periodic import scheduling

SCHEDULE = {"tasks.purge_expired_tokens": ("Delete expired API tokens (their sockets close)", 1, "hours")}



class Migration(migrations.Migration):
    dependencies = [
        ("tasks", "0011_chat_models_moved_to_chat"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [scheduling(SCHEDULE)]

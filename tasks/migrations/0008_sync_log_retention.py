"""The sync log's purge watermark, and the web app's housekeeping on celery beat's schedule:
purging the sync log (hourly; it keeps SYNC_LOG_RETENTION_DAYS) and expired sessions (daily)."""

from django.db import migrations, models

from events.periodic import scheduling

SCHEDULE = {
    "tasks.purge_sync_log": ("Purge sync-log changes older than SYNC_LOG_RETENTION_DAYS (14 days)", 1, "hours"),
    "tasks.clear_expired_sessions": ("Clear expired sign-in sessions", 1, "days"),
}



class Migration(migrations.Migration):
    dependencies = [
        ("tasks", "0007_task_field_limits"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.CreateModel(
            name="SyncLogPurge",
            fields=[
                ("id", models.PositiveSmallIntegerField(default=1, primary_key=True, serialize=False)),
                ("purged_through", models.BigIntegerField(default=0)),
            ],
        ),
        scheduling(SCHEDULE),
    ]

"""Put the periodic housekeeping of the event pipeline on celery beat's schedule (django-celery-beat),
where operators see and change it in the admin (later jobs: the apps' own migrations, e.g. tasks 0008)."""

from django.db import migrations

from events.periodic import scheduling

SCHEDULE = {
    "events.purge_sent_outbox": ("Purge outbox rows sent over a day ago", 1, "hours"),
    "events.purge_processed_events": ("Purge processed-event ids older than 14 days", 1, "days"),
    "notifications.fire_stuck_reminders": ("Fire reminders stuck past their time (no scheduler running)", 1, "minutes"),
}



class Migration(migrations.Migration):
    dependencies = [
        ("events", "0002_outbox_notify_trigger"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [scheduling(SCHEDULE)]

"""Put the periodic housekeeping of the event pipeline on celery beat's schedule (django-celery-beat),
where operators see and change it in the admin. One list for the whole system."""

from django.db import migrations

SCHEDULE = {
    "events.purge_sent_outbox": ("Purge outbox rows sent over a day ago", 1, "hours"),
    "events.purge_processed_events": ("Purge processed-event ids older than 14 days", 1, "days"),
    "notifications.fire_stuck_reminders": ("Fire reminders stuck past their time (no scheduler running)", 1, "minutes"),
}


def add_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for task, (name, every, period) in SCHEDULE.items():
        interval, _ = IntervalSchedule.objects.get_or_create(every=every, period=period)
        PeriodicTask.objects.get_or_create(task=task, defaults={"name": name, "interval": interval})


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(task__in=SCHEDULE).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("events", "0002_outbox_notify_trigger"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(add_schedule, remove_schedule)]

"""Rows of celery beat's schedule (django-celery-beat), for the migrations that put a periodic task on it.

The schedule lives in the database, where operators see and change it in the admin, so each app
adds its jobs with a data migration: ``operations = [..., scheduling(SCHEDULE)]``. The steps use the
migration's historical models (``apps``), never the current ones.
"""

from functools import partial

from django.db import migrations


def add_periodic_tasks(apps, schedule):
    """``schedule``: {celery task name: (admin name, every, period)}; tasks already there are kept as they are."""
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for task, (name, every, period) in schedule.items():
        interval, _ = IntervalSchedule.objects.get_or_create(every=every, period=period)
        PeriodicTask.objects.get_or_create(task=task, defaults={"name": name, "interval": interval})


def remove_periodic_tasks(apps, schedule):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(task__in=schedule).delete()


def _add(schedule, apps, schema_editor):
    add_periodic_tasks(apps, schedule)


def _remove(schedule, apps, schema_editor):
    remove_periodic_tasks(apps, schedule)


def scheduling(schedule):
    """The migration operation that puts ``schedule``'s jobs on celery beat's schedule (and takes
    them off again when the migration is reversed)."""
    return migrations.RunPython(partial(_add, schedule), partial(_remove, schedule))

"""Rows of celery beat's schedule (django-celery-beat), for the migrations that put a periodic task on it.

The schedule lives in the database, where operators see and change it in the admin, so each app
adds its jobs with a data migration; these are the two steps every such migration takes. They use
the migration's historical models (``apps``), never the current ones.
"""


def add_periodic_tasks(apps, schedule):
    """``schedule``: {celery task name: (admin name, every, period)}; tasks already there are kept as they are."""
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for task, (name, every, period) in schedule.items():
        interval, _ = IntervalSchedule.objects.get_or_create(every=every, period=period)
        PeriodicTask.objects.get_or_create(task=task, defaults={"name": name, "interval": interval})


def remove_periodic_tasks(apps, schedule):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(task__in=schedule).delete()

"""Benchmark of the reminder scheduler: lateness with 100,000 reminders pending and bursts.

    python bench/bench_scheduler.py [--pending 100000] [--burst 2000] [--spread 500]

Needs the infrastructure up (`make infra`). On a scratch database it loads ``--pending``
reminders due in a day straight into the schedule (the backlog the scheduler must not be slowed
by), starts `run_scheduler` and `relay_outbox` as in the Procfile, then schedules ``--burst``
reminders due together a few seconds ahead and ``--spread`` more over the following ten seconds
the way the API does (reminder.scheduled events through the outbox and Kafka), and prints the
lateness (fired_at - remind_at, on the scheduler's clock) p50/p99/max of each group.
"""

import argparse
import statistics
import subprocess
import sys
import uuid
from datetime import timedelta

from scratch import REPO, scratch_environment

from testing.stats import percentile
from testing.waits import wait_until


def reminders(count, remind_at_of, user_id):
    """Schedule rows of ``count`` reminders of tasks of ``user_id``, due an hour after they remind."""
    from notifications.models import ScheduledReminder
    from tasks.events import reminder_id

    rows = []
    for index in range(count):
        task_id, remind_at = uuid.uuid4(), remind_at_of(index)
        rows.append(ScheduledReminder(
            reminder_id=reminder_id(task_id, remind_at), task_id=task_id, user_id=str(user_id), title=f"reminder {index}",
            due_at=remind_at + timedelta(hours=1), remind_at=remind_at, correlation_id="bench",
        ))
    return rows


def task_of(reminder):
    from django.utils import timezone

    from tasks.models import Task

    now = timezone.now()
    return Task(
        id=reminder.task_id, user_id=int(reminder.user_id), title=reminder.title, due_date=reminder.due_at,
        remind_at=reminder.remind_at, created_at=now, updated_at=now,
    )


def schedule_through_kafka(group):
    """reminder.scheduled for each reminder, emitted through the outbox as the tasks service does
    when it creates a task with that reminder. The scheduler checks each against the sync log, so
    the log rows of those creations are written first, in bulk (setup, not what is measured)."""
    from django.db import transaction

    from events.outbox import emit_all
    from tasks.events import EventContext, reminder_event, sync_event, task_object
    from tasks.models import TaskChange

    context = EventContext(source="todo-api", correlation_id="bench")
    tasks = [task_of(r) for r in group]
    TaskChange.objects.bulk_create(
        (TaskChange(user_id=t.user_id, task_id=t.id, event=sync_event("created", task_object(t), context)) for t in tasks),
        batch_size=5000,
    )
    with transaction.atomic():
        emit_all(
            (
                reminder_event("reminder.scheduled", task_id=t.id, title=t.title, due_date=t.due_date,
                               remind_at=t.remind_at, user_id=t.user_id, context=context),
                str(t.id),
            )
            for t in tasks
        )


def wait_until_fired(group, scheduler, timeout=120):
    from notifications.models import ScheduledReminder

    ids = [reminder.pk for reminder in group]
    wait_until(
        lambda: scheduler.poll() is not None
        or ScheduledReminder.objects.filter(pk__in=ids, status="fired").count() == len(ids),
        timeout, f"the scheduler firing {len(ids):,} reminders",
    )
    if scheduler.poll() is not None:
        raise SystemExit(f"the scheduler exited before it fired {len(ids):,} reminders")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pending", type=int, default=100_000)
    parser.add_argument("--burst", type=int, default=2_000)
    parser.add_argument("--spread", type=int, default=500)
    args = parser.parse_args()

    with scratch_environment("benchsched") as env:
        from django.utils import timezone

        from notifications.models import ScheduledReminder
        from tasks.models import User

        owner = User.objects.create(username="bench").id
        print(f"loading {args.pending:,} pending reminders due in a day …", flush=True)
        tomorrow = timezone.now() + timedelta(days=1)
        ScheduledReminder.objects.bulk_create(reminders(args.pending, lambda i: tomorrow, owner), batch_size=5000)

        scheduler = subprocess.Popen([sys.executable, "manage.py", "run_scheduler"], cwd=REPO, env=env)
        relay = subprocess.Popen([sys.executable, "manage.py", "relay_outbox"], cwd=REPO, env=env)
        try:
            # Its start-up is not what is measured: wait until it fires a reminder due already.
            warm_up = reminders(1, lambda i: timezone.now(), owner)
            ScheduledReminder.objects.bulk_create(warm_up)
            wait_until_fired(warm_up, scheduler)
            start = timezone.now() + timedelta(seconds=5)
            burst = reminders(args.burst, lambda i: start, owner)
            spread = reminders(args.spread, lambda i: start + timedelta(seconds=10 * i / args.spread), owner)
            schedule_through_kafka(burst + spread)
            print(f"{args.burst:,} reminders due together and {args.spread:,} over 10 s, from {start:%H:%M:%S} …", flush=True)
            wait_until_fired(burst + spread, scheduler)
        finally:
            for process in (scheduler, relay):
                process.terminate()
                process.wait(60)

        for label, group in [("burst", burst), ("spread", spread)]:
            rows = ScheduledReminder.objects.filter(pk__in=[r.pk for r in group]).values_list("remind_at", "fired_at")
            lateness = [(fired - due).total_seconds() for due, fired in rows]
            print(f"  {label:6} ({len(lateness):,}): lateness p50 {statistics.median(lateness) * 1000:.0f} ms, "
                  f"p99 {percentile(lateness, .99) * 1000:.0f} ms, max {max(lateness) * 1000:.0f} ms")
        still_pending = ScheduledReminder.objects.filter(status="pending").count()
        print(f"  pending after the run: {still_pending:,} (the backlog, none fired early)")


if __name__ == "__main__":
    main()

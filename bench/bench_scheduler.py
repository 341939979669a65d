"""Benchmark of the reminder scheduler: lateness with many reminders pending and bursts.

    python bench/bench_scheduler.py [--pending 1000000] [--burst 2000] [--spread 500] [--deliver]

Needs the infrastructure up (`make infra`). On a scratch database it loads ``--pending``
reminders due over the next 30 days straight into the schedule with one INSERT ... SELECT (the
backlog the scheduler must not be slowed by; its rows are never fired, so their ids are random
rather than tasks.events.reminder_id's), starts `run_scheduler` and `relay_outbox` as in the Procfile, then schedules ``--burst``
reminders due together ``--lead`` seconds ahead and ``--spread`` more over the following ten
seconds the way the API does (reminder.scheduled events through the outbox and Kafka), and prints
the lateness (fired_at - remind_at, on the scheduler's clock) p50/p99/max of each group, and how
fast the scheduler recorded the schedule. A reminder recorded after its time is counted apart:
its lateness is the recording's, not the clock's (the lead must cover the recording of the
whole schedule for the lateness to measure the clock). With ``--deliver`` the notification service
(`run_consumer notifications`) runs too, and each group's delivery lateness (the in-app
notification's created_at - remind_at) is printed as well: what the owner sees, the scheduler's
firing and the notification consumer's batches together (the owner has no e-mail address: no
e-mail is queued).
"""

import argparse
import statistics
import subprocess
import sys
import time
import uuid
from datetime import timedelta

from scratch import REPO, scratch_environment

from testing.stats import percentile
from testing.waits import wait_until

# Seconds from scheduling the burst to its time: enough for the scheduler to record 2,500
# reminder.scheduled events on a loaded machine, as a real burst (everyone's 9:00) is
# scheduled long before it is due.
LEAD_SECONDS = 30


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


def seed_pending(count, first_remind_at, user_id):
    """``count`` pending reminders of ``user_id``, from ``first_remind_at`` over the next 30 days,
    written by PostgreSQL itself (a 1,000,000-row backlog in seconds; bulk_create took minutes), then vacuumed."""
    from django.db import connection

    from notifications.models import ScheduledReminder

    with connection.cursor() as cursor:
        cursor.execute(
            f"""INSERT INTO {ScheduledReminder._meta.db_table}
                    (reminder_id, task_id, user_id, title, due_at, remind_at, status, correlation_id, updated_at)
                SELECT gen_random_uuid(), gen_random_uuid(), %(user_id)s, 'reminder ' || i,
                       remind_at + interval '1 hour', remind_at, 'pending', 'bench', now()
                FROM generate_series(1, %(count)s) AS i,
                     LATERAL (SELECT %(first)s::timestamptz + (i * interval '30 days') / %(count)s AS remind_at) AS t""",
            {"user_id": str(user_id), "count": count, "first": first_remind_at},
        )
        # A real backlog was vacuumed long ago: its first vacuum is not to run during the burst.
        cursor.execute(f"VACUUM (ANALYZE) {ScheduledReminder._meta.db_table}")


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


def wait_until_delivered(group, processes, timeout=120):
    from notifications.models import Notification

    ids = [reminder.pk for reminder in group]
    wait_until(
        lambda: any(process.poll() is not None for process in processes)
        or Notification.objects.filter(reminder_id__in=ids).count() == len(ids),
        timeout, f"the notification service delivering {len(ids):,} reminders",
    )
    if any(process.poll() is not None for process in processes):
        raise SystemExit(f"a process exited before {len(ids):,} reminders were delivered")


def delivery_lateness_of(group):
    """p50/p99/max in ms of ``group``'s in-app notifications' created_at - remind_at."""
    from notifications.models import Notification

    remind_at = {str(reminder.pk): reminder.remind_at for reminder in group}
    created = Notification.objects.filter(reminder_id__in=list(remind_at)).values_list("reminder_id", "created_at")
    lateness = [(at - remind_at[str(reminder_id)]).total_seconds() * 1000 for reminder_id, at in created]
    return {"count": len(lateness), "p50_ms": statistics.median(lateness), "p99_ms": percentile(lateness, .99),
            "max_ms": max(lateness)}


def lateness_of(group):
    """p50/p99/max lateness in ms of ``group``'s fired rows (fired_at - remind_at, the scheduler's clock)."""
    from notifications.models import ScheduledReminder

    rows = ScheduledReminder.objects.filter(pk__in=[r.pk for r in group]).values_list("remind_at", "fired_at", "updated_at")
    lateness = [(fired - due).total_seconds() * 1000 for due, fired, _ in rows]
    # updated_at is when the scheduler recorded the reminder.scheduled (firing is an update() that
    # leaves it): a reminder recorded after its time cannot fire on time, whatever the clock does.
    recorded_late = sum(1 for due, _, recorded in rows if recorded > due)
    return {"count": len(lateness), "p50_ms": statistics.median(lateness), "p99_ms": percentile(lateness, .99),
            "max_ms": max(lateness), "early": sum(1 for value in lateness if value < 0), "recorded_late": recorded_late,
            "last_recorded_ms": max((recorded - due).total_seconds() * 1000 for due, _, recorded in rows)}


def recording_rate(group, emitted_at):
    """Reminders recorded per second, from the moment their events were in the outbox to the last one's recording."""
    from django.db.models import Max

    from notifications.models import ScheduledReminder

    last = ScheduledReminder.objects.filter(pk__in=[r.pk for r in group]).aggregate(last=Max("updated_at"))["last"]
    return len(group) / max((last - emitted_at).total_seconds(), 1e-3)


def measure(pending, burst_size, spread_size, lead_seconds=LEAD_SECONDS, deliver=False):
    """One run on a scratch database; returns the seeding time and the lateness of each group (and
    with ``deliver`` each group's delivery lateness)."""
    with scratch_environment("benchsched") as env:
        from django.utils import timezone

        from notifications.models import ScheduledReminder
        from tasks.models import User

        owner = User.objects.create(username="bench").id
        print(f"loading {pending:,} pending reminders due over the next 30 days …", flush=True)
        seeding = time.perf_counter()
        seed_pending(pending, timezone.now() + timedelta(hours=1), owner)
        seeding = time.perf_counter() - seeding

        scheduler = subprocess.Popen([sys.executable, "manage.py", "run_scheduler"], cwd=REPO, env=env)
        relay = subprocess.Popen([sys.executable, "manage.py", "relay_outbox"], cwd=REPO, env=env)
        processes = [scheduler, relay]
        if deliver:
            processes.append(subprocess.Popen([sys.executable, "manage.py", "run_consumer", "notifications"], cwd=REPO, env=env))
        try:
            # Its start-up is not what is measured: wait until it fires a reminder due already.
            warm_up = reminders(1, lambda i: timezone.now(), owner)
            ScheduledReminder.objects.bulk_create(warm_up)
            wait_until_fired(warm_up, scheduler)
            start = timezone.now() + timedelta(seconds=lead_seconds)
            burst = reminders(burst_size, lambda i: start, owner)
            spread = reminders(spread_size, lambda i: start + timedelta(seconds=10 * i / spread_size), owner)
            schedule_through_kafka(burst + spread)
            emitted_at = timezone.now()
            print(f"{burst_size:,} reminders due together and {spread_size:,} over 10 s, from {start:%H:%M:%S} …", flush=True)
            wait_until_fired(burst + spread, scheduler)
            if deliver:
                wait_until_delivered(burst + spread, processes)
        finally:
            for process in processes:
                process.terminate()
                process.wait(60)

        result = {"pending": pending, "seed_seconds": seeding, "lead_seconds": lead_seconds,
                  "recorded_per_s": recording_rate(burst + spread, emitted_at), "burst": lateness_of(burst)}
        if spread:
            result["spread"] = lateness_of(spread)
        if deliver:
            result["delivered"] = {"burst": delivery_lateness_of(burst), **({"spread": delivery_lateness_of(spread)} if spread else {})}
        result["pending_after"] = ScheduledReminder.objects.filter(status="pending").count()
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pending", type=int, default=1_000_000)
    parser.add_argument("--burst", type=int, default=2_000)
    parser.add_argument("--spread", type=int, default=500)
    parser.add_argument("--lead", type=float, default=LEAD_SECONDS, help="seconds from scheduling to the burst")
    parser.add_argument("--deliver", action="store_true", help="run the notification service too; print delivery lateness")
    args = parser.parse_args(argv)

    result = measure(args.pending, args.burst, args.spread, args.lead, args.deliver)
    print(f"  {result['pending']:,} pending loaded in {result['seed_seconds']:.1f} s; the schedule recorded at "
          f"{result['recorded_per_s']:,.0f} reminders/s, the burst due {args.lead:g} s after it was emitted")
    for label in ("burst", "spread"):
        if label in result:
            group = result[label]
            print(f"  {label:6} ({group['count']:,}): lateness p50 {group['p50_ms']:.0f} ms, "
                  f"p99 {group['p99_ms']:.0f} ms, max {group['max_ms']:.0f} ms, fired early {group['early']}; "
                  f"recorded after their time {group['recorded_late']:,} (the last {group['last_recorded_ms']:+.0f} ms)")
    for label, group in result.get("delivered", {}).items():
        print(f"  {label:6} ({group['count']:,}) delivered: in-app notification p50 {group['p50_ms']:.0f} ms, "
              f"p99 {group['p99_ms']:.0f} ms, max {group['max_ms']:.0f} ms after remind_at")
    print(f"  pending after the run: {result['pending_after']:,} (the backlog, none fired early)")
    return result


if __name__ == "__main__":
    main()

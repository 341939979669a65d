import logging
import threading

from django.core.management.base import BaseCommand, CommandError

from events.consumer import ConsumerRuntime
from events.registry import get_consumer
from events.worker import run_in_foreground
from notifications.scheduler import clock

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Run the reminder scheduler until SIGTERM or SIGINT: keep the schedule from the reminders "
        "topic (group reminder-scheduler) and emit reminder.due at each remind_at, once. Several "
        "schedulers may run side by side."
    )

    def handle(self, *args, **options):
        runtime = ConsumerRuntime(get_consumer("scheduler"))
        stop = threading.Event()
        clock_failed = threading.Event()

        def run_clock():
            try:
                clock.run(stop)
            except BaseException:
                # A scheduler that no longer fires must not look healthy: take the process down.
                logger.exception("reminder clock failed; stopping the scheduler")
                clock_failed.set()
                runtime.stop()

        clock_thread = threading.Thread(target=run_clock, name="reminder-clock")
        clock_thread.start()
        try:
            run_in_foreground(runtime)
        finally:
            stop.set()
            clock_thread.join()
        if clock_failed.is_set():
            raise CommandError("the reminder clock failed (see the log above)")

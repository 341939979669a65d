from django.core.management.base import BaseCommand, CommandError

from events.models import OutboxEvent
from events.outbox import retry_parked


class Command(BaseCommand):
    help = (
        "Un-park outbox rows Kafka refused, once the cause is fixed: the relay then publishes them "
        "and the rows of their key held behind them, in order."
    )

    def add_arguments(self, parser):
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--all", action="store_true", help="every parked row")
        which.add_argument("--id", type=int, nargs="+", dest="ids", metavar="N", help="the parked rows with these ids")
        parser.add_argument("--dry-run", action="store_true", help="list the rows, change nothing")

    def handle(self, *args, all, ids, dry_run, **options):
        rows = OutboxEvent.objects.parked()
        if ids:
            rows = rows.filter(id__in=ids)
            missing = sorted(set(ids) - set(rows.values_list("id", flat=True)))
            if missing:
                raise CommandError(f"not parked (or no such row): {', '.join(map(str, missing))}")
        for row in rows.order_by("id").values("id", "event_type", "key", "parked_at", "park_reason"):
            self.stdout.write(
                f"{row['id']} {row['event_type']} key {row['key']} parked {row['parked_at']:%Y-%m-%d %H:%M:%S}: "
                f"{row['park_reason']}"
            )
        if dry_run:
            self.stdout.write(f"dry run: {rows.count()} parked row(s) would be retried")
            return
        self.stdout.write(f"retried {retry_parked(rows)} parked row(s); the relay publishes them in order")

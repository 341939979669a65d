import time

from django.core.management.base import BaseCommand, CommandError

from events.consumer import liveness_file


class Command(BaseCommand):
    help = (
        "Exit 0 if the consumer <name> running on this machine (pod) touched its liveness file within "
        "--max-age seconds, else 1. For Kubernetes exec liveness probes."
    )

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--max-age", type=float, default=60.0, help="seconds (default 60)")

    def handle(self, *args, name, max_age, **options):
        path = liveness_file(name)
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            raise CommandError(f"consumer {name} is not running: {path} does not exist") from None
        if age > max_age:
            raise CommandError(f"consumer {name} is stuck: {path} last touched {age:.0f}s ago (limit {max_age:.0f}s)")
        self.stdout.write(f"consumer {name} alive ({age:.1f}s ago)")

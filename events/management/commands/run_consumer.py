from django.core.management.base import BaseCommand

from events.consumer import ConsumerRuntime
from events.registry import CONSUMERS, get_consumer
from events.worker import run_in_foreground


class Command(BaseCommand):
    help = (
        "Run one registered consumer (events/registry.py) until SIGTERM or SIGINT: at-least-once, "
        "idempotent, with retries and dead letters. With METRICS_PORT set, serves /metrics and "
        "/healthz on it."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", choices=sorted(CONSUMERS), help="the consumer to run")

    def handle(self, *args, name, **options):
        run_in_foreground(ConsumerRuntime(get_consumer(name)))

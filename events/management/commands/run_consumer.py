import logging
import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from events.consumer import ConsumerRuntime, DeadLetterRateExceeded
from events.registry import CONSUMERS, get_consumer
from events.worker_http import start_worker_http_server

logger = logging.getLogger("events.consumer")


class Command(BaseCommand):
    help = (
        "Run one registered consumer (events/registry.py) until SIGTERM or SIGINT: at-least-once, "
        "idempotent, with retries and dead letters. With METRICS_PORT set, serves /metrics and "
        "/healthz on it."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", choices=sorted(CONSUMERS), help="the consumer to run")

    def handle(self, *args, name, **options):
        runtime = ConsumerRuntime(get_consumer(name))

        def request_stop(signum, frame):
            logger.info("consumer %s: %s received, finishing the current batch", name, signal.Signals(signum).name)
            runtime.stop()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        server = None
        if settings.METRICS_PORT:
            server = start_worker_http_server(settings.METRICS_PORT, runtime.health, addr=settings.METRICS_ADDR)
        try:
            runtime.run()
        except DeadLetterRateExceeded as exc:
            raise CommandError(str(exc)) from exc
        finally:
            if server is not None:
                server.shutdown()

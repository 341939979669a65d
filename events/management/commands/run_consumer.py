import logging
import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from prometheus_client import start_http_server

from events.consumer import ConsumerRuntime, DeadLetterRateExceeded, liveness_file
from events.registry import CONSUMERS, get_consumer

logger = logging.getLogger("events.consumer")


class Command(BaseCommand):
    help = (
        "Run one registered consumer (events/registry.py) until SIGTERM or SIGINT: at-least-once, "
        "idempotent, with retries and dead letters. Serves Prometheus metrics on METRICS_PORT (when set) "
        "and touches a liveness file (see consumer_alive)."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", choices=sorted(CONSUMERS), help="the consumer to run")

    def handle(self, *args, name, **options):
        runtime = ConsumerRuntime(get_consumer(name), liveness_path=liveness_file(name))

        def request_stop(signum, frame):
            logger.info("consumer %s: %s received, finishing the current message", name, signal.Signals(signum).name)
            runtime.stop()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        if settings.METRICS_PORT:
            start_http_server(settings.METRICS_PORT, addr=settings.METRICS_ADDR)
            logger.info("consumer %s: metrics on http://%s:%d/metrics", name, settings.METRICS_ADDR, settings.METRICS_PORT)
        try:
            runtime.run()
        except DeadLetterRateExceeded as exc:
            raise CommandError(str(exc)) from exc

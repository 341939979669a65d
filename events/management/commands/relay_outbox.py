import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand

from events.debezium import watch_replication_slot
from events.relay.loop import OutboxRelay
from events.worker_http import start_worker_http_server


class Command(BaseCommand):
    help = (
        "Publish committed outbox events to Kafka (one leader at a time; others stand by). "
        "With METRICS_PORT set, serves /metrics and /healthz on it."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--batch-size", type=int, default=4000,
            help="most rows per round (default 4000); rounds start small and grow while there is a backlog",
        )
        parser.add_argument(
            "--poll-interval", type=float, default=1.0, help="seconds between polls when no NOTIFY arrives"
        )

    def handle(self, *args, batch_size, poll_interval, **options):
        stop = threading.Event()

        def request_stop(signum, frame):
            # Only a flag: the relay finishes its round, flushes and closes.
            stop.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        if settings.OUTBOX_PUBLISHER == "debezium":
            return self._report_debezium(stop)
        relay = OutboxRelay(batch_size=batch_size, poll_interval=poll_interval, stop=stop)
        server = None
        if settings.METRICS_PORT:
            server = start_worker_http_server(settings.METRICS_PORT, relay.health, addr=settings.METRICS_ADDR)
        try:
            relay.run()
        finally:
            if server is not None:
                server.shutdown()

    def _report_debezium(self, stop):
        """Debezium publishes the outbox: publish nothing, and report its replication slot instead."""
        server = None
        if settings.METRICS_PORT:
            server = start_worker_http_server(
                settings.METRICS_PORT, lambda: (True, "relay: not needed (OUTBOX_PUBLISHER=debezium)"),
                addr=settings.METRICS_ADDR,
            )
        try:
            watch_replication_slot(stop)
        finally:
            if server is not None:
                server.shutdown()

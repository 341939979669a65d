"""``manage.py run_connect``: the Kafka Connect worker of OUTBOX_PUBLISHER=debezium, and its connector.

The process becomes the worker (exec), so that a supervisor's signals, and a kill -9, reach
Connect itself. Before that it forks a short-lived helper (detached, so the worker never has a
child to reap) that waits for the worker's REST API, PUTs the connector's configuration (an
idempotent create-or-update: a restart with an unchanged configuration changes nothing) and
says when the connector's task runs, or why not.
"""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

from django.conf import settings
from django.core.management.base import BaseCommand

from events.debezium import CONNECT_LIBS, CONNECTOR_NAME, connector_config, properties_text, worker_properties

DEFAULT_PORT = 8083  # Kafka Connect's own default
REGISTER_DEADLINE_SECONDS = 300
JVM_OPTIONS = ["-Xms256m", "-Xmx512m", "-XX:+UseSerialGC", "-Djava.awt.headless=true"]
LOG4J_CONFIG = settings.BASE_DIR / "infra" / "connect" / "log4j2.properties"


class Command(BaseCommand):
    help = (
        "With OUTBOX_PUBLISHER=debezium: run the Kafka Connect worker (its REST API on --port) and "
        "register the Debezium connector that publishes the outbox. Otherwise wait, doing nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"the REST API's port ({DEFAULT_PORT})")

    def handle(self, *args, port, **options):
        if settings.OUTBOX_PUBLISHER != "debezium":
            self.stdout.write(
                f"run_connect: not needed: OUTBOX_PUBLISHER={settings.OUTBOX_PUBLISHER} (relay_outbox publishes "
                "the outbox); waiting until stopped"
            )
            sys.stdout.flush()
            # A process that waits and holds no memory: make run's supervisor keeps it as a placeholder.
            os.execvp("sleep", ["sleep", "infinity"])
        subprocess.run(["bash", str(settings.BASE_DIR / "scripts" / "connect.sh"), "jars"], check=True)
        work_dir = settings.BASE_DIR / ".cache" / "connect" / f"run-{port}"
        work_dir.mkdir(parents=True, exist_ok=True)
        worker_config = work_dir / "worker.properties"
        worker_config.write_text(properties_text(worker_properties(port)))
        self.stdout.write(f"run_connect: Kafka Connect worker on http://127.0.0.1:{port}, connector {CONNECTOR_NAME}")
        sys.stdout.flush()
        register_in_background(port, connector_config())
        os.execvp("java", [
            "java", *JVM_OPTIONS, f"-Dlog4j2.configurationFile={LOG4J_CONFIG}", "-cp", f"{CONNECT_LIBS}/*",
            "org.apache.kafka.connect.cli.ConnectDistributed", str(worker_config),
        ])


def register_in_background(port, config):
    """Fork twice: the grandchild registers the connector, and is nobody's child once it exits."""
    if os.fork() == 0:
        if os.fork() == 0:
            try:
                register(port, config)
            finally:
                os._exit(0)
        os._exit(0)
    os.wait()


def register(port, config):
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + REGISTER_DEADLINE_SECONDS
    while True:
        try:
            status, body = request("PUT", f"{base}/connectors/{CONNECTOR_NAME}/config", config)
            if status in (200, 201):
                break
            # 404 and 503 while the worker starts, 409 while it joins its group or rebalances: ask again.
            if status not in (404, 409, 503):
                return say(f"connector {CONNECTOR_NAME} refused ({status}): {body}")
        except OSError:
            pass  # not listening yet
        if time.monotonic() > deadline:
            return say(f"the worker's REST API did not accept the connector within {REGISTER_DEADLINE_SECONDS} s")
        time.sleep(1)
    say(f"connector {CONNECTOR_NAME} {'created' if status == 201 else 'configured'}")
    while time.monotonic() < deadline:
        try:
            _, state = request("GET", f"{base}/connectors/{CONNECTOR_NAME}/status")
        except OSError:
            return  # the worker stopped
        tasks = state.get("tasks", []) if isinstance(state, dict) else []
        if tasks and tasks[0]["state"] == "RUNNING":
            return say(f"connector {CONNECTOR_NAME}: task running, publishing the outbox")
        if tasks and tasks[0]["state"] == "FAILED":
            return say(f"connector {CONNECTOR_NAME}: task FAILED: {tasks[0].get('trace', '')[:2000]}")
        time.sleep(1)


def request(method, url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def say(message):
    print(f"run_connect: {message}", flush=True)

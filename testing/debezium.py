"""OUTBOX_PUBLISHER=debezium end to end, for tests and the drain drill: a private PostgreSQL with
logical decoding, the Kafka Connect worker of ``manage.py run_connect``, and raw readers of topics.

The shared PostgreSQL runs with ``wal_level = replica`` and serves other work: it is never
restarted for this. Every test here gets a cluster of its own (testing/postgres.py's PrivatePostgres,
with logical decoding on), which is also what makes these tests run anywhere, CI included. Kafka
is the shared broker under the run's topic prefix (the Connect worker's own topics included).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from events.debezium import CONNECTOR_NAME
from events.transports.kafka.admin import delete_topics
from events.transports.kafka.config import client_config
from testing.postgres import PrivatePostgres
from testing.processes import REPO
from testing.waits import wait_until


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]



class LogicalPostgres(PrivatePostgres):
    """A private cluster with what Debezium needs: logical decoding, slots and WAL senders."""

    def __init__(self, workdir):
        super().__init__(workdir, database="faults")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write("wal_level = logical\nmax_replication_slots = 10\nmax_wal_senders = 10\nfsync = off\n")
        self.created = False

    def start(self):
        """Start the cluster; the first start creates the database too."""
        super().start()
        if not self.created:
            self.create_database()
            self.created = True

    def connect(self):
        return psycopg.connect(self.url, autocommit=True)

    def query(self, sql, params=()):
        with self.connect() as conn:
            return conn.execute(sql, params).fetchall()


class Stack:
    """The private database (migrated) and the environment of the project's processes on it.

    ``prefix`` namespaces this stack's topics and groups on the shared broker; ``publisher`` is
    OUTBOX_PUBLISHER for the processes it starts.
    """

    def __init__(self, logs, prefix, slot="test_outbox"):
        self.logs = Path(logs)
        self.logs.mkdir(parents=True, exist_ok=True)
        # Not under pytest's tmp_path: the postgres OS user (when we are root) must reach the cluster.
        self.pg_dir = Path(tempfile.mkdtemp(prefix="debezium-pg-"))
        os.chmod(self.pg_dir, 0o755)
        self.postgres = LogicalPostgres(self.pg_dir / "postgres")
        self.prefix = prefix
        self.slot = slot
        self.processes = []

    def env(self, prefix=None, **extra):
        prefix = prefix or self.prefix
        return {
            **os.environ, "DEBUG": "true", "DATABASE_URL": self.postgres.url, "KAFKA_TOPIC_PREFIX": prefix,
            "KAFKA_GROUP_PREFIX": prefix, "OUTBOX_PUBLISHER": "debezium", "DEBEZIUM_SLOT_NAME": self.slot,
            "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "WARNING", **extra,
        }

    def manage(self, *args, prefix=None, **extra_env):
        """Run ``manage.py <args>`` to its end; return its stdout."""
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=self.env(prefix, **extra_env),
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"manage.py {args[0]} exited {done.returncode}:\n{done.stderr[-5000:]}"
        return done.stdout

    def start(self):
        self.postgres.start()
        self.manage("migrate", "-v", "0")
        self.manage("create_topics")

    def spawn(self, name, *args, prefix=None, **extra_env):
        process = Process(name, [sys.executable, "manage.py", *args], self.env(prefix, **extra_env), self.logs)
        self.processes.append(process)
        return process

    def connect_worker(self):
        worker = ConnectWorker(self, free_port())
        self.processes.append(worker)
        return worker

    def stop(self):
        for process in self.processes:
            process.stop()
        self.postgres.stop()
        shutil.rmtree(self.pg_dir, ignore_errors=True)

    def topics(self, prefix=None):
        """Every topic of ``prefix`` (this stack's by default) on the shared broker."""
        prefix = prefix or self.prefix
        consumer = Consumer(client_config(**{"group.id": "unused"}))
        try:
            return sorted(name for name in consumer.list_topics(timeout=30).topics if name.startswith(prefix))
        finally:
            consumer.close()

    def delete_topics(self, prefix=None):
        delete_topics(self.topics(prefix))


class Process:
    """A process with its output appended to ``<logs>/<name>.log``; SIGKILL-able with its group."""

    def __init__(self, name, command, env, logs):
        self.name, self.command, self.env = name, command, env
        self.log_path = Path(logs) / f"{name}.log"
        self.process = None
        self.start()

    def start(self):
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command, cwd=REPO, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def log(self):
        return self.log_path.read_text(errors="replace")

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def kill(self):
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)

    def stop(self):
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()


class ConnectWorker(Process):
    """``manage.py run_connect`` on a free port: the process becomes the Connect worker (exec)."""

    def __init__(self, stack, port):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        super().__init__("connect", [sys.executable, "manage.py", "run_connect", "--port", str(port)], stack.env(),
                         stack.logs)

    def status(self):
        try:
            with urllib.request.urlopen(f"{self.url}/connectors/{CONNECTOR_NAME}/status", timeout=5) as response:
                return json.loads(response.read())
        except (OSError, urllib.error.HTTPError):
            return None

    def wait_running(self, timeout=240):
        """Until the connector's task runs (AssertionError with the log if it fails or the worker exits)."""

        def running():
            assert self.alive(), f"the Connect worker exited:\n{self.log()[-5000:]}"
            tasks = (self.status() or {}).get("tasks", [])
            assert not tasks or tasks[0]["state"] != "FAILED", tasks[0].get("trace", "")[:3000]
            return bool(tasks) and tasks[0]["state"] == "RUNNING"

        wait_until(running, timeout, "the Debezium connector's task running")


@dataclass(frozen=True)
class RawMessage:
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: tuple  # ((name, bytes), ...) in the record's order

    def header(self, name):
        return dict(self.headers)[name]


def read_topics(topics, until, timeout=120):
    """Every message of the full topic names ``topics`` from the beginning, until ``until(messages)``."""
    consumer = Consumer(client_config(**{"group.id": f"test-raw-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False}))
    try:
        metadata = consumer.list_topics(timeout=30)
        consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)
                         for topic in topics for partition in metadata.topics[topic].partitions])
        messages = []
        deadline = time.monotonic() + timeout
        while not until(messages):
            assert time.monotonic() < deadline, f"read {len(messages)} messages of {topics} in {timeout} s, not enough"
            for message in consumer.consume(500, timeout=0.5):
                if message.error() is None:
                    messages.append(RawMessage(message.topic(), message.partition(), message.offset(), message.key(),
                                               message.value(), tuple(message.headers() or ())))
        return messages
    finally:
        consumer.close()


def event_ids_of(messages):
    return {message.header("event_id").decode() for message in messages}


# Task changes through the project's own service layer (every event type of the three topics),
# in a process on the private database: ``manage.py shell -c WORKLOAD`` with TASKS and ROUNDS set.
WORKLOAD = """
import os, time
from datetime import timedelta
from django.contrib.auth import get_user_model
from django.utils import timezone
from tasks import services
from tasks.events import EventContext
from tasks.models import Task

user, _ = get_user_model().objects.get_or_create(username=os.environ["WORKLOAD_USER"])
context = EventContext.new("debezium-test")
pause = float(os.environ.get("WORKLOAD_PAUSE", "0"))
tasks = [
    services.task_create(user=user, context=context, title=f"t{i} é 漢字 😀 \\"q\\" \\\\ </script>",
                         description="ß" * (i % 7), due_date=timezone.now() + timedelta(days=2),
                         remind_at=timezone.now() + timedelta(days=1) if i % 3 == 0 else None)
    for i in range(int(os.environ["WORKLOAD_TASKS"]))
]
for round_ in range(int(os.environ["WORKLOAD_ROUNDS"])):
    for i, task in enumerate(tasks):
        task = Task.objects.get(pk=task.pk)
        if round_ == int(os.environ["WORKLOAD_ROUNDS"]) - 1 and i % 2:
            services.task_complete(task=task, context=context)
        else:
            services.task_update(task=task, context=context, title=f"t{i} round {round_} ☃", priority=1 + round_ % 4)
        time.sleep(pause)
print("done", flush=True)
"""


def run_workload(stack, tasks, rounds, pause=0.0, wait=True):
    """The changes of WORKLOAD; with ``wait`` false, the running Process (its log says "done" at the end)."""
    env = {"WORKLOAD_USER": f"u{uuid.uuid4().hex[:8]}", "WORKLOAD_TASKS": str(tasks), "WORKLOAD_ROUNDS": str(rounds),
           "WORKLOAD_PAUSE": str(pause)}
    if wait:
        return stack.manage("shell", "-v", "0", "-c", WORKLOAD, **env)
    return stack.spawn(f"workload-{env['WORKLOAD_USER']}", "shell", "-v", "0", "-c", WORKLOAD, **env)


def outbox_rows(stack, topics=("task-events", "reminders", "task-updates")):
    """{event_id: (topic, key, payload, event_type)} of the outbox rows of ``topics`` in the private database."""
    return {str(event_id): (topic, key, payload, event_type) for event_id, topic, key, payload, event_type in
            stack.postgres.query("SELECT event_id, topic, key, payload, event_type FROM events_outboxevent"
                                 " WHERE topic = ANY(%s)", [list(topics)])}

"""The container image runs the whole system: every process of the Procfile, each in a container of
the image (`make image`) under podman on the host network, against the local Kafka, PostgreSQL and
Redis, and the end-to-end path works through them: a task created over the API reaches Kafka and
the audit trail, a reminder fires as an in-app notification, completing a recurring task creates
its next occurrence, and the WebSocket receives the change.

The image's own commands prepare everything, as the Helm chart's migrate Job does: `migrate` on a
scratch database and `create_topics` under a scratch topic and group prefix, both removed at the
end, with every container (also when a check fails). `make smoke-image` runs this module alone.
"""

import json
import secrets
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
import websockets.sync.client
from confluent_kafka.admin import AdminClient
from django.conf import settings

from scripts.supervise import system_processes
from testing.kafka import TopicReader

REPO = Path(__file__).resolve().parents[2]
IMAGE_SH = ["bash", str(REPO / "scripts" / "image.sh")]

# Procfile processes that are not part of the image, and why.
NOT_IN_THE_IMAGE = {"mail": "make run's mail catcher, development only: its package is not in the runtime set"}


def wait_for(condition, timeout, what):
    """Poll ``condition`` until it returns something true (returned), or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.25)


def image(*args, check=True):
    return subprocess.run([*IMAGE_SH, *args], capture_output=True, text=True, check=check, timeout=300)


class Stack:
    """Containers of the image on a scratch database and namespace; ``remove()`` takes everything away."""

    def __init__(self, workdir, free_port):
        self.token = secrets.token_hex(4)
        self.prefix = f"smoke-{self.token}-"
        self.container_prefix = f"todo-smoke-{self.token}-"
        db = settings.DATABASES["default"]
        self.server = {"host": db["HOST"] or "127.0.0.1", "port": db["PORT"] or 5432}
        self.server.update(user=db["USER"], password=db["PASSWORD"])
        self.database = f"smoke_{self.token}"
        self.base_url = f"http://127.0.0.1:{free_port}"
        self.containers = []
        self.env_file = Path(workdir) / "smoke.env"
        environment = {
            "DATABASE_URL": "postgres://{user}:{password}@{host}:{port}/".format(**self.server) + self.database,
            "REDIS_URL": settings.REDIS_URL,
            "KAFKA_BOOTSTRAP_SERVERS": settings.KAFKA_BOOTSTRAP_SERVERS,
            "KAFKA_TOPIC_PREFIX": self.prefix,
            "KAFKA_GROUP_PREFIX": self.prefix,
            "CHANNEL_LAYER_PREFIX": self.prefix,
            "CELERY_TASK_DEFAULT_QUEUE": self.prefix + "celery",
            "RATELIMIT_CACHE_PREFIX": self.prefix + "rl:",
            "WEB_PORT": str(free_port),
            # Production settings, as deployed, except that the smoke speaks plain http on loopback.
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(40),
            "SECURE_SSL_REDIRECT": "false",
            "SESSION_COOKIE_SECURE": "false",
            "CSRF_COOKIE_SECURE": "false",
            "SECURE_HSTS_SECONDS": "0",
        }
        self.env_file.write_text("".join(f"{name}={value}\n" for name, value in environment.items()))

    def container_name(self, process):
        return f"{self.container_prefix}{process}"

    def create_database(self):
        with psycopg.connect(dbname="postgres", autocommit=True, **self.server) as connection:
            connection.execute(f'CREATE DATABASE "{self.database}"')

    def job(self, name, command):
        """A one-off command of the image (migrate, create_topics); fails the test if it fails."""
        result = image("job", self.container_name(name), str(self.env_file), command, check=False)
        assert result.returncode == 0, f"{command} failed in the image:\n{result.stdout}{result.stderr}"

    def start(self, process, command):
        name = self.container_name(process)
        self.containers.append(name)
        image("run", name, str(self.env_file), command)

    def running(self):
        """The names of the containers that are still running."""
        return set(image("running", self.container_prefix).stdout.split())

    def logs(self, process):
        return image("logs", self.container_name(process), check=False).stdout

    def all_logs(self):
        return "\n".join(f"--- {name}:\n{image('logs', name, check=False).stdout[-3000:]}" for name in self.containers)

    def remove(self):
        image(
            "remove", *self.containers, *[self.container_name(job) for job in ("migrate", "create_topics")], check=False
        )
        with psycopg.connect(dbname="postgres", autocommit=True, **self.server) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        admin = AdminClient({"bootstrap.servers": settings.KAFKA_BOOTSTRAP_SERVERS})
        topics = [name for name in admin.list_topics(timeout=30).topics if name.startswith(self.prefix)]
        if topics:
            for future in admin.delete_topics(topics, operation_timeout=30).values():
                future.result()
        groups = [
            group.group_id
            for group in admin.list_consumer_groups().result(30).valid
            if group.group_id.startswith(self.prefix)
        ]
        if groups:
            for future in admin.delete_consumer_groups(groups, request_timeout=30).values():
                future.result()


@pytest.fixture
def stack(tmp_path, free_port):
    stack = Stack(tmp_path, free_port)
    stack.create_database()
    try:
        yield stack
    finally:
        stack.remove()


def iso(moment):
    return moment.isoformat().replace("+00:00", "Z")


def test_every_process_runs_from_the_image_and_the_system_works_end_to_end(stack, settings):
    processes = system_processes(REPO / "Procfile")
    names = {name for name, _ in processes}
    assert set(NOT_IN_THE_IMAGE) <= names, "a process named in NOT_IN_THE_IMAGE is no longer in the Procfile"
    in_image = [(name, command) for name, command in processes if name not in NOT_IN_THE_IMAGE]

    stack.job("migrate", "python manage.py migrate --noinput")
    stack.job("create_topics", "python manage.py create_topics")
    for name, command in in_image:
        stack.start(name, command)
    # The tests' Kafka reader looks at the image's topics.
    settings.KAFKA_TOPIC_PREFIX = stack.prefix
    api = httpx.Client(base_url=stack.base_url, timeout=10)

    def web_serves():
        try:
            return api.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(web_serves, 120, "the web process to be ready")
        # The image runs as its non-root user, with nothing of the tests installed.
        web = stack.container_name("web")
        assert image("exec", web, "id", "-u").stdout.strip() == "10001"
        probe = image("exec", web, "python", "-c", "import pytest", check=False)
        assert probe.returncode != 0 and "No module named 'pytest'" in probe.stderr

        registered = api.post("/api/auth/register/", json={"username": "smoke", "password": secrets.token_urlsafe(16)})
        assert registered.status_code == 201, registered.text
        api.headers["Authorization"] = f"Token {registered.json()['token']}"

        ws_url = stack.base_url.replace("http", "ws", 1) + "/ws/sync/"
        with websockets.sync.client.connect(
            ws_url, additional_headers={"Authorization": api.headers["Authorization"]}
        ) as socket:
            now = datetime.now(UTC)
            created = api.post("/api/tasks/", json={"title": "smoke: write it down"})
            assert created.status_code == 201, created.text
            task_id = created.json()["id"]

            # WebSocket: the realtime bridge pushes the change to this user's socket.
            def socket_message():
                message = json.loads(socket.recv(timeout=60))
                return (
                    message
                    if message.get("event_type") == "sync.task_changed" and message["data"]["task_id"] == task_id
                    else None
                )

            message = wait_for(socket_message, 60, "the task's change on the WebSocket")
            assert message["data"]["change_type"] == "created"

            # Kafka: the relay published task.created, keyed by the task.
            reader = TopicReader(["task-events"])
            try:
                received = reader.read_until(
                    lambda got: any(m.key == task_id and m.headers.get("event_type") == "task.created" for m in got),
                    timeout=60,
                )
            finally:
                reader.close()
            event = next(m.event for m in received if m.key == task_id)
            assert event["data"]["title"] == "smoke: write it down"

            # The audit service recorded it.
            def audited():
                entries = api.get("/api/audit/", params={"task_id": task_id}).json()["results"]
                return [entry for entry in entries if entry["event_type"] == "task.created"]

            assert wait_for(audited, 60, "the audit trail row")[0]["event_id"] == event["event_id"]

            # A reminder fires: the scheduler sends reminder.due, notifications delivers it in-app.
            reminded = api.post(
                "/api/tasks/",
                json={
                    "title": "smoke: remind me",
                    "due_date": iso(now + timedelta(hours=1)),
                    "remind_at": iso(now + timedelta(seconds=3)),
                },
            )
            assert reminded.status_code == 201, reminded.text

            def notified():
                return [
                    n for n in api.get("/api/notifications/").json()["results"] if n["task_id"] == reminded.json()["id"]
                ]

            assert wait_for(notified, 60, "the reminder's in-app notification")

            # A recurring task completed: the recurrence service creates its next occurrence.
            recurring = api.post(
                "/api/tasks/",
                json={
                    "title": "smoke: every day",
                    "due_date": iso(now + timedelta(hours=1)),
                    "recurrence_rule": "FREQ=DAILY",
                },
            )
            assert recurring.status_code == 201, recurring.text
            assert api.post(f"/api/tasks/{recurring.json()['id']}/complete/").status_code == 200

            def next_occurrence():
                tasks = api.get("/api/tasks/", params={"completed": "false", "search": "smoke: every day"}).json()[
                    "results"
                ]
                return [t for t in tasks if t["parent_task_id"] == recurring.json()["id"]]

            (following,) = wait_for(next_occurrence, 60, "the next occurrence")
            assert following["due_date"] > recurring.json()["due_date"]

        # Celery's worker and beat came up on Redis, and no process fell over along the way.
        wait_for(lambda: "ready." in stack.logs("worker"), 60, "the celery worker")
        wait_for(lambda: "beat: Starting" in stack.logs("beat"), 60, "celery beat")
        assert stack.running() == {stack.container_name(name) for name, _ in in_image}
    except AssertionError as failure:
        raise AssertionError(f"{failure}\n{stack.all_logs()}") from failure

"""Fixtures of the real broker and of the project's processes, shared by the tests of every app.

Each one is an ``e2e`` fixture (tests/conftest.py E2E_FIXTURES); the work is done by testing/.
"""

import os
import subprocess
import uuid

import pytest
from django.conf import settings as django_settings

from testing.kafka import create_namespace, delete_namespace
from testing.kafka_broker import PrivateKafkaBroker
from testing.outbox import relay_thread
from infra.kube.lifecycle import HELM
from testing.processes import REPO, Process, manage, program, wait_until_serving, worker_environment


def _use_kafka_prefix(prefix, settings, setenv):
    settings.KAFKA_TOPIC_PREFIX = prefix
    settings.KAFKA_GROUP_PREFIX = prefix
    # Processes that tests start (make run, workers) inherit the same namespace.
    setenv("KAFKA_TOPIC_PREFIX", prefix)
    setenv("KAFKA_GROUP_PREFIX", prefix)


@pytest.fixture(scope="session")
def kafka_namespace(run_prefix):
    """This run's topics and consumer groups on the shared broker, for every test that uses Kafka."""
    _use_kafka_prefix(run_prefix, django_settings, os.environ.__setitem__)
    create_namespace()
    yield run_prefix
    delete_namespace()


@pytest.fixture
def isolated_kafka(settings, monkeypatch):
    """A fresh topic and group namespace for one test (settings and env for subprocesses)."""
    prefix = f"test-{uuid.uuid4().hex[:8]}-"
    _use_kafka_prefix(prefix, settings, monkeypatch.setenv)
    create_namespace()
    yield prefix
    delete_namespace()


@pytest.fixture
def private_kafka(tmp_path, kafka_namespace):
    """A running private broker with the contract's topics (this run's prefix); stopped afterwards."""
    broker = PrivateKafkaBroker(tmp_path / "kafka")
    broker.start()
    try:
        broker.create_topics()
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def outbox_relay(transactional_db, kafka_namespace):
    """A relay publishing this test's committed outbox rows to the shared broker."""
    with relay_thread() as relay:
        yield relay


@pytest.fixture
def relay_processes(transactional_db, tmp_path, kafka_namespace):
    """Start ``manage.py relay_outbox`` processes with ``relay_processes(n, bootstrap_servers=None)``;
    every one is stopped at the end of the test."""
    started = []

    def start(count=1, bootstrap_servers=None):
        extra = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers} if bootstrap_servers else {}
        new = [
            Process(manage("relay_outbox", "--poll-interval", "0.2"), tmp_path / f"relay-{len(started) + i}.log",
                    worker_environment(**extra)).start()
            for i in range(count)
        ]
        started.extend(new)
        return new

    yield start
    for relay in started:
        relay.stop()


@pytest.fixture
def workers(transactional_db, tmp_path, kafka_namespace):
    """``workers(["run_consumer", "audit"], EXTRA_ENV=...)`` starts a ``manage.py`` worker; all stop
    after the test (the log of one that exited badly is printed)."""
    started = []

    def start(args, **extra_env):
        worker = Process(manage(*args), tmp_path / f"{'-'.join(args)}-{len(started)}.log",
                         worker_environment(**extra_env)).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.stop() not in (0, None):
            print(f"--- {worker.command} exited with {worker.process.returncode}:\n{worker.log()}")


@pytest.fixture
def web_server(transactional_db, free_port, tmp_path, kafka_namespace):
    """uvicorn serving todo_project.asgi (HTTP, WebSocket, MCP) on this test's database; yields its URL."""
    web = Process(
        program("uvicorn", "todo_project.asgi:application", "--host", "127.0.0.1", "--port", str(free_port)),
        tmp_path / "web.log",
        worker_environment(),
    ).start()
    url = f"http://127.0.0.1:{free_port}"
    try:
        wait_until_serving(url, web)
        yield url
    finally:
        web.stop()


@pytest.fixture(scope="session")
def helm():
    """helm, built by scripts/tools.sh (`make tools`, a step of `make test`; a no-op once built)."""
    result = subprocess.run(["bash", str(REPO / "scripts" / "tools.sh")], capture_output=True, text=True, timeout=1100)
    assert result.returncode == 0, f"building helm failed:\n{result.stdout}\n{result.stderr}"
    return str(HELM)

"""Test-wide set-up: this run's namespaces on the shared services, and the two tiers of the suite.

The suite talks to the real Kafka, PostgreSQL and Redis that `make test` provisioned. A random
prefix of this run (of each xdist worker) keeps its channel-layer groups, rate-limit counters,
celery queue and, for the tests that use Kafka, its topics and consumer groups apart from a
`make run` on the same servers and from other runs; the topics are deleted again at the end.

Tiers. A test is ``e2e`` when it uses a fixture that needs the Kafka broker or starts processes,
servers or a browser (``E2E_FIXTURES``, directly or through another fixture): the mark is set at
collection from the fixtures, nobody writes it by hand except on a test that starts a process in
its body. Every other test is in the fast tier (`make test-fast`: ``-m "not e2e"``, PostgreSQL and
Redis only, without the minute-long API fuzz: Makefile FAST_TIER_LEAVES_OUT) and cannot reach a
broker: KAFKA_BOOTSTRAP_SERVERS points where nobody listens, so a test that uses Kafka without
asking for ``kafka_namespace`` (or a fixture built on it) fails in both tiers alike instead of
touching the shared broker outside its namespace.
"""

import os
import uuid

import pytest
from channels.layers import channel_layers
from django.test import TransactionTestCase

from testing.db import create_test_database, destroy_test_database, flush_written_tables
from testing.ports import free_port as any_free_port
from todo_project.celery import app as celery_app

E2E_FIXTURES = frozenset({
    "kafka_namespace", "isolated_kafka", "private_kafka",  # the broker
    "outbox_relay", "relay_processes", "workers", "web_server", "celery_worker", "production_web",  # processes
    "live_server", "system", "browser",  # servers and a browser
    "gunicorn_server", "kube_apiserver",  # the multi-process web server; a real Kubernetes API server
})
# Every test of these folders runs the real engines (the image, daprd, Kafka Connect): e2e whatever its fixtures.
E2E_FOLDERS = ("tests/deploy/",)
BROKER_OUT_OF_REACH = "127.0.0.1:9"  # the discard port: nothing speaks Kafka there

# Fixtures shared by the tests of several apps: kafka_namespace, isolated_kafka, private_kafka,
# outbox_relay, relay_processes, workers, web_server (tests/fixtures.py); dapr_sidecar, dapr_delivery.
pytest_plugins = ["tests.fixtures", "tests.events.dapr_helpers"]


def pytest_collection_modifyitems(items):
    for item in items:
        folder = item.path.relative_to(item.config.rootpath).as_posix()
        if E2E_FIXTURES.intersection(item.fixturenames) or folder.startswith(E2E_FOLDERS):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def django_db_setup(django_test_environment, django_db_blocker, django_db_modify_db_settings, django_db_createdb):
    """pytest-django's test database, copied from a template migrated once per set of migration files
    (testing/db.py) instead of migrated afresh by every xdist worker; ``--create-db`` rebuilds it."""
    with django_db_blocker.unblock():
        original_name = create_test_database(rebuild=django_db_createdb)
    yield
    with django_db_blocker.unblock():
        destroy_test_database(original_name)


@pytest.fixture(scope="session", autouse=True)
def transactional_teardown_empties_only_the_written_tables():
    """After a ``transaction=True`` test, the database is emptied as Django's flush does, but only the
    tables the test wrote are truncated (testing/db.py flush_written_tables): a flush of every table
    and the rewrite of content types and permissions cost a few hundred milliseconds per test."""
    flush_every_table = TransactionTestCase._fixture_teardown

    def fixture_teardown(test_case):
        if (test_case.available_apps is not None or test_case.serialized_rollback
                or test_case._databases_names(include_mirrors=False) != ["default"]):
            return flush_every_table(test_case)  # what only Django's own flush knows to do
        flush_written_tables()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TransactionTestCase, "_fixture_teardown", fixture_teardown)
        yield


@pytest.fixture(scope="session", autouse=True)
def run_prefix():
    """This run's namespace on the shared Redis (channel-layer groups, rate limits) and Kafka."""
    from django.conf import settings

    prefix = f"test-{uuid.uuid4().hex[:8]}-"
    # Channel-layer groups ("user.<id>"): parallel runs reuse user ids on the same Redis.
    settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = prefix
    os.environ["CHANNEL_LAYER_PREFIX"] = prefix  # and the processes tests start
    return prefix


@pytest.fixture(autouse=True)
def fast_tier(request, settings):
    """A fast-tier test sees no broker (see the module docstring), and hashes passwords cheaply: it
    runs in this process only, while the processes an e2e test starts must verify its users'
    passwords with the project's own hashers."""
    if request.node.get_closest_marker("e2e") is None:
        settings.KAFKA_BOOTSTRAP_SERVERS = BROKER_OUT_OF_REACH
        # A readiness probe waits out its whole timeout (2 s) for a broker out of reach; half a second
        # is still ample for the local PostgreSQL and Redis it asks too.
        settings.READINESS_TIMEOUT_SECONDS = 0.5
        settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    """Each test gets the process's channel layer anew. channels-redis binds a layer's receive lock
    to the event loop that first waits on it, and every async test (each WebSocket communicator) runs
    on a loop of its own, so a layer kept across tests fails with "bound to a different event loop"
    as soon as two receives contend; a production process keeps one loop for its layer's life."""
    yield
    channel_layers.backends.clear()


@pytest.fixture(autouse=True)
def rate_limit_counters(settings, monkeypatch, run_prefix):
    """Each test counts its sign-ins, registrations and reminders afresh, under the default limits.

    The suite registers many users from 127.0.0.1; counters carried over from earlier tests (or
    from a `make run` on the same Redis) would refuse them. A fresh key prefix per test, also for
    the servers a test starts, keeps the counters apart; old keys expire with their window.
    """
    prefix = f"{run_prefix}rl-{uuid.uuid4().hex[:8]}:"
    settings.RATELIMIT_CACHE_PREFIX = prefix
    monkeypatch.setenv("RATELIMIT_CACHE_PREFIX", prefix)
    return prefix


@pytest.fixture(scope="session", autouse=True)
def celery_queue():
    """This run's own celery queue: tasks sent without naming one (the e-mail sender's) reach only
    the workers this run starts, never another run's nor a `make run` on the same Redis."""
    queue = f"test-{uuid.uuid4().hex[:8]}"
    celery_app.conf.task_default_queue = queue
    os.environ["CELERY_TASK_DEFAULT_QUEUE"] = queue  # for the worker processes tests start
    yield queue
    with celery_app.connection_for_write() as connection:
        connection.default_channel.client.delete(queue)


@pytest.fixture
def free_port():
    return any_free_port()

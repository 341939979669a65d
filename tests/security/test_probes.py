"""The probes' door: /readyz answers anyone who reaches a pod, so it says which check failed and
never why (no host names, addresses or driver messages); the detail goes to the log.

The web process is unready only without its database; a worker also needs Kafka.
"""

import json
from urllib.error import HTTPError
from urllib.request import urlopen

import httpx
import pytest

from events.worker_http import start_worker_http_server
from testing.processes import Process, program, wait_until_serving, worker_environment
from testing.waits import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def get_json(url):
    try:
        with urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.e2e  # starts a server process in its body
def test_a_web_process_without_its_database_is_unready_and_says_only_which_check_failed(tmp_path, free_port):
    unreachable = "postgres://todo:hunter2@127.0.0.1:1/nowhere"  # nothing listens on port 1
    command = ["uvicorn", "todo_project.asgi:application", "--host", "127.0.0.1", "--port", str(free_port)]
    web = Process(program(*command), tmp_path / "web.log", {**worker_environment(), "DATABASE_URL": unreachable}).start()
    url = f"http://127.0.0.1:{free_port}"
    try:
        wait_until_serving(url, web)
        response = httpx.get(f"{url}/readyz", timeout=15)
        assert response.status_code == 503
        checks = {"database": "error", "redis": "ok", "kafka": "ok"}
        assert response.json() == {"status": "unavailable", "checks": checks}
        assert "nowhere" not in response.text and "hunter2" not in response.text
        assert wait_for(lambda: "readiness check database failed" in web.log(), timeout=10), web.log()
    finally:
        web.stop()


def test_a_worker_without_kafka_is_unready_and_says_only_which_check_failed(free_port, settings, kafka_namespace):
    settings.READINESS_CACHE_SECONDS = 0
    settings.READINESS_TIMEOUT_SECONDS = 1
    server = start_worker_http_server(free_port, lambda: (True, "ok"), addr="127.0.0.1")
    try:
        assert get_json(f"http://127.0.0.1:{free_port}/readyz") == (
            200, {"status": "ok", "checks": {"database": "ok", "kafka": "ok"}}
        )
        settings.KAFKA_BOOTSTRAP_SERVERS = f"127.0.0.1:{free_port}"  # nobody speaks Kafka there
        status, body = get_json(f"http://127.0.0.1:{free_port}/readyz")
        assert (status, body) == (503, {"status": "unavailable", "checks": {"database": "ok", "kafka": "error"}})
    finally:
        server.shutdown()


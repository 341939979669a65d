"""Running the project's workers as real processes in tests, on the test database and Kafka namespace."""

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.outbox_relay import test_database_url

REPO = Path(__file__).resolve().parent.parent


def worker_environment(**extra):
    """The environment of a worker that shares this test's database and topic/group prefixes."""
    return {**os.environ, "DATABASE_URL": test_database_url(), "PYTHONUNBUFFERED": "1", **extra}


class Worker:
    """``python manage.py <args>`` (or any ``command``) with its output in ``log_path``."""

    def __init__(self, args, log_path, env, *, command=None):
        self.args = args
        self.log_path = Path(log_path)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command or [sys.executable, "manage.py", *args], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
            )

    @classmethod
    def command(cls, command, log_path, env):
        """A program of the virtualenv, e.g. ``celery``."""
        return cls(command, log_path, env, command=[str(Path(sys.executable).parent / command[0]), *command[1:]])

    def log(self):
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout=60):
        """SIGTERM and wait; returns the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout)
        return self.process.returncode

    def kill(self):
        self.process.kill()
        self.process.wait(30)


@pytest.fixture
def workers(transactional_db, tmp_path):
    """``workers(["run_consumer", "audit"], EXTRA_ENV=...)`` starts a worker; all stop after the test."""
    started = []

    def start(args, **extra_env):
        worker = Worker(args, tmp_path / f"{'-'.join(args)}-{len(started)}.log", worker_environment(**extra_env))
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.stop() not in (0, None):
            print(f"--- {worker.args} exited with {worker.process.returncode}:\n{worker.log()}")


def wait_until_serving(url, worker, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert worker.process.poll() is None, worker.log()
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the web server did not start:\n{worker.log()}")


@pytest.fixture
def web_server(transactional_db, free_port, tmp_path):
    """uvicorn serving todo_project.asgi (HTTP, WebSocket, MCP) on this test's database; yields its URL."""
    web = Worker.command(
        ["uvicorn", "todo_project.asgi:application", "--host", "127.0.0.1", "--port", str(free_port)],
        tmp_path / "web.log",
        worker_environment(),
    )
    url = f"http://127.0.0.1:{free_port}"
    try:
        wait_until_serving(url, web)
        yield url
    finally:
        web.stop()

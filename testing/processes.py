"""Child processes of the project (``manage.py`` commands, programs of the virtualenv), each with
its output in a log file; restartable, stoppable, killable."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from testing.db import database_url
from testing.waits import wait_for

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def manage(*args):
    """The command line of ``python manage.py <args>``."""
    return [sys.executable, "manage.py", *args]


def program(name, *args):
    """The command line of a program of the virtualenv, e.g. ``program("celery", "-A", ...)``."""
    return [str(VENV_BIN / name), *args]


def worker_environment(**extra):
    """The environment of a process that shares this one's database and topic/group prefixes."""
    return {**os.environ, "DATABASE_URL": database_url(), "PYTHONUNBUFFERED": "1", **extra}


class Process:
    """``command`` run from the repository root, its output appended to ``log_path``.

    ``own_session``: the process leads a session of its own, so that ``kill()`` takes its
    children with it (a crash of the whole process tree, as a drill wants) and a Ctrl-C of the
    caller does not reach it.
    """

    def __init__(self, command, log_path, env, *, own_session=False):
        self.command, self.log_path, self.env, self.own_session = command, Path(log_path), env, own_session
        self.process = None

    def start(self):
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=self.own_session,
            )
        return self

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def log(self):
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout=60):
        """SIGTERM and wait; SIGKILL when it does not stop within ``timeout`` s. Returns the exit code."""
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return None if self.process is None else self.process.returncode

    def kill(self):
        """SIGKILL, as a crash: no clean-up runs."""
        if self.own_session:
            os.killpg(self.process.pid, signal.SIGKILL)
        else:
            self.process.kill()
        self.process.wait(30)


def serves(url):
    """Whether a web process answers 200 on ``url``/healthz."""
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until_serving(url, process, timeout=60.0):
    """Wait until ``process`` (a Process of the web app) serves ``url``; AssertionError with its log
    when it exits or does not within ``timeout``."""
    served = wait_for(lambda: serves(url) or not process.alive(), timeout, interval=0.2)
    assert served and process.alive(), f"the web server did not start:\n{process.log()}"

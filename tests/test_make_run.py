"""`make run` serves the system in the foreground, restarts a process that dies, and Ctrl-C stops
every process it started."""

import os
import signal
import subprocess
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

from testing import ports
from testing.processes import REPO, serves
from testing.waits import wait_for


def processes_in_session(session_id):
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command name: state ppid pgrp session ...
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == session_id:
            found.append(int(entry.name))
    return found


def processes_running(session_id, *argv_tail):
    """Pids of the session whose command line ends with ``argv_tail`` (e.g. "run_consumer", "audit")."""
    found = []
    for pid in processes_in_session(session_id):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
        except OSError:
            continue
        if tuple(argv[-len(argv_tail):]) == argv_tail:
            found.append(pid)
    return found


def mail_page(port):
    try:
        with urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            return response.status == 200 and b"Caught e-mails" in response.read()
    except (URLError, OSError):
        return False


def test_make_run_restarts_a_killed_worker_keeps_serving_and_ctrl_c_leaves_no_process_behind(free_port, tmp_path, kafka_namespace):
    # Appending: make, supervisord and its output listener all write to this file; none overwrites another.
    log = (tmp_path / "make-run.log").open("a+")
    mail_port = ports.free_port()
    # Ports of its own for the mail catcher too, apart from any other `make run` on this machine.
    env = {
        **os.environ,
        "WEB_PORT": str(free_port),
        "EMAIL_PORT": str(ports.free_port()),
        "MAIL_CATCHER_HTTP_PORT": str(mail_port),
    }
    make = subprocess.Popen(["make", "run"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def output():
        log.seek(0)
        return log.read()

    try:
        assert wait_for(lambda: serves(f"http://127.0.0.1:{free_port}"), timeout=180), output()
        assert wait_for(lambda: mail_page(mail_port), timeout=30), output()
        audit = wait_for(lambda: processes_running(make.pid, "run_consumer", "audit"), timeout=30)
        assert len(audit) == 1, output()

        os.kill(audit[0], signal.SIGKILL)
        web_served_throughout = True

        def audit_is_back():
            nonlocal web_served_throughout
            web_served_throughout &= serves(f"http://127.0.0.1:{free_port}")
            restarted = [pid for pid in processes_running(make.pid, "run_consumer", "audit") if pid != audit[0]]
            return restarted and "success: audit entered RUNNING state" in output().split("exited: audit", 1)[-1]

        assert wait_for(audit_is_back, timeout=60), output()
        assert web_served_throughout
        assert "exited: audit (terminated by SIGKILL; not expected)" in output()

        # Ctrl-C in a terminal signals the whole foreground process group.
        os.killpg(make.pid, signal.SIGINT)
        make.wait(timeout=60)
        assert wait_for(lambda: not processes_in_session(make.pid), timeout=30), processes_in_session(make.pid)
        assert not serves(f"http://127.0.0.1:{free_port}") and not mail_page(mail_port)
    finally:
        # supervisord gives each process a process group of its own, but they all stay in this session.
        for pid in processes_in_session(make.pid):
            os.kill(pid, signal.SIGKILL)
    text = output()
    assert "kafka" in text
    # Each process's output is named, as honcho printed it.
    assert any(line.split()[1:3] == ["web", "|"] for line in text.splitlines() if len(line.split()) > 2), text

"""`make run` serves the system in the foreground and Ctrl-C stops every process it started."""

import os
import signal
import subprocess
import time
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

REPO = Path(__file__).resolve().parent.parent


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


def wait_for(condition, timeout, interval=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    return condition()


def healthz(port):
    try:
        with urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return response.status == 200 and b'"ok"' in response.read()
    except (URLError, OSError):
        return False


def test_make_run_serves_healthz_and_ctrl_c_leaves_no_process_behind(free_port, tmp_path):
    log = (tmp_path / "make-run.log").open("w+")
    env = {**os.environ, "WEB_PORT": str(free_port)}
    make = subprocess.Popen(["make", "run"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert wait_for(lambda: healthz(free_port), timeout=180), (log.seek(0), log.read())[1]
        # Ctrl-C in a terminal signals the whole foreground process group.
        os.killpg(make.pid, signal.SIGINT)
        make.wait(timeout=60)
        assert wait_for(lambda: not processes_in_session(make.pid), timeout=30), processes_in_session(make.pid)
        assert not healthz(free_port)
    finally:
        if make.poll() is None or processes_in_session(make.pid):
            os.killpg(make.pid, signal.SIGKILL)
    log.seek(0)
    output = log.read()
    assert "web" in output and "kafka" in output

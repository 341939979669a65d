"""The web process: gunicorn, as process manager, running uvicorn workers (HTTP, WebSocket, MCP).

    gunicorn -c gunicorn.conf.py --bind 127.0.0.1:8000

`make run` (Procfile), the image (Dockerfile CMD) and the chart's web Deployment all run this
one command; only the address differs. Each worker is a whole ASGI server (uvicorn: httptools,
uvloop) with its own event loop, database pool and MCP session manager; they share the
listening socket, so the kernel spreads connections over them. The channel layer is Redis, so
a WebSocket on one worker gets the group messages sent from any other, and the MCP server is
stateless (a fresh transport per request), so any worker answers any MCP request.

Why gunicorn rather than ``uvicorn --workers``: it restarts a worker that dies or that stops
answering its heartbeat for ``WEB_WORKER_TIMEOUT`` seconds (a wedged event loop), recycles
workers after ``WEB_MAX_REQUESTS`` requests with jitter so that they never all restart at
once, reloads code gracefully on SIGHUP (new workers first, then the old ones drain), and
adds or removes a worker on SIGTTIN/SIGTTOU.
"""

import math
import os
from pathlib import Path

from uvicorn_worker import UvicornWorker


def env_int(name, default):
    value = os.environ.get(name, "")
    if value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"{name}={value!r} is not a whole number") from None


def usable_cores(cgroup=Path("/sys/fs/cgroup")):
    """The cores this process may use: its cgroup's CPU quota (a container's CPU limit, rounded
    up) when it has one, else the CPUs it may run on (its affinity mask)."""
    cores = len(os.sched_getaffinity(0))
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()  # cgroup v2: "<quota> <period>" or "max <period>"
    except (OSError, ValueError):
        try:  # cgroup v1
            quota, period = ((cgroup / "cpu" / name).read_text().strip() for name in ("cpu.cfs_quota_us", "cpu.cfs_period_us"))
        except OSError:
            return cores
    if quota in ("max", "-1"):
        return cores
    return max(1, min(cores, math.ceil(int(quota) / int(period))))


class WebWorker(UvicornWorker):
    """uvicorn's gunicorn worker, with uvicorn's access log only when gunicorn's is asked for
    (``--access-logfile``): otherwise every request would format a line nobody prints."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.config.access_log = bool(self.cfg.accesslog)


wsgi_app = "todo_project.asgi:application"  # gunicorn's name for the application, ASGI here
worker_class = WebWorker
# One worker per usable core: a worker is bound by its GIL to one core, and it already overlaps
# requests that wait on PostgreSQL (each request's Django work runs in a thread of the worker's
# request pool, todo_project/handler.py), so workers beyond the cores add only memory (about
# 145 MiB each) and contention.
workers = env_int("WEB_WORKERS", 0) or usable_cores()
# The heartbeat: a worker whose event loop has not ticked for this long is killed and replaced.
timeout = env_int("WEB_WORKER_TIMEOUT", 30)
# SIGTERM: stop accepting, finish open requests, close WebSockets (1012, clients reconnect); then
# SIGKILL after this long. scripts/supervise.py and the chart's grace period wait longer.
graceful_timeout = 10
# A worker is replaced after this many requests (plus up to 10 % jitter): a bound on whatever a
# long-lived process might accumulate. 0 never recycles. Its WebSockets reconnect to another worker.
max_requests = env_int("WEB_MAX_REQUESTS", 100_000)
max_requests_jitter = max_requests // 10
# uvicorn's keep-alive default (gunicorn's is 2 s).
keepalive = 5
# The proxies whose X-Forwarded-* headers are believed: gunicorn reads FORWARDED_ALLOW_IPS itself
# (default 127.0.0.1) and hands it to uvicorn, as plain uvicorn read it before.
# No control socket (gunicornc): it would live in $HOME, shared by every gunicorn of the machine and
# read-only in the image; signals do the same (HUP reload, TTIN/TTOU one worker more/less, TERM stop).
control_socket_disable = True

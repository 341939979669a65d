"""The CPU cost of one API request in-process, and where it goes (cProfile).

    python bench/profile_web.py [--op create|list|update] [--requests 500] [--mode asgi|sync]
        [--concurrency 8] [--profile [--top 40]]

Runs against the database of DATABASE_URL (migrated) with the settings of the environment
(`make run` sets DEBUG=true; say DEBUG=false for a deployment's figures). A fresh user and API
token are made first; then ``--requests`` requests go to the application without a network:

- ``asgi``: through todo_project.asgi.application (the ASGI app uvicorn serves, body limit,
  the HTTP handler and its thread hop included), ``--concurrency`` at a time;
- ``sync``: through Django's test client (the same middleware, views and SQL, no ASGI), so that
  cProfile, which sees one thread, sees every call of the request.

It prints the CPU time per request (every thread of the process) and, with ``--profile``
(``sync`` mode), the functions with the most cumulative and own time.
"""

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "todo_project.settings")
os.environ.setdefault("DATABASE_POOL_MAX_SIZE", "10")  # as the Procfile's web process


def requests_of(op, task_id, count):
    if op == "create":
        return "POST", "/api/tasks/", {"title": f"profile {count}", "priority": 2, "tags": ["profile"]}
    if op == "list":
        return "GET", "/api/tasks/?page_size=20", None
    return "PATCH", f"/api/tasks/{task_id}/", {"title": f"profile #{count}"}


def make_user():
    from tasks.accounts import tokens
    from tasks.models import User

    user = User.objects.create_user(username=f"profile-{uuid.uuid4().hex[:12]}", password=None)
    return user, tokens.issue(user)


async def asgi_request(application, method, path, body, token):
    raw_path, _, query = path.partition("?")
    payload = json.dumps(body).encode() if body is not None else b""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": raw_path, "raw_path": raw_path.encode(), "query_string": query.encode(), "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()), (b"authorization", f"Token {token}".encode())],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
    }
    sent = False
    status = None

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": payload, "more_body": False}
        await asyncio.Event().wait()  # the client never disconnects

    async def send(message):
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await application(scope, receive, send)
    if status >= 300:
        raise RuntimeError(f"{method} {path}: {status}")


def run_asgi(op, count, concurrency, token, task_id):
    from todo_project.asgi import application

    async def worker(index, share):
        for number in range(share):
            await asgi_request(application, *requests_of(op, task_id, index * share + number), token)

    async def everything():
        await asyncio.gather(*(worker(index, count // concurrency) for index in range(concurrency)))

    asyncio.run(everything())
    return count // concurrency * concurrency


def run_sync(op, count, token, task_id, profiler=None):
    from django.test import Client

    client = Client(headers={"authorization": f"Token {token}"})
    if profiler:
        profiler.enable()
    for number in range(count):
        method, path, body = requests_of(op, task_id, number)
        response = getattr(client, method.lower())(path, json.dumps(body) if body else None,
                                                    content_type="application/json")
        if response.status_code >= 300:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.content[:200]!r}")
    if profiler:
        profiler.disable()
    return count


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--op", choices=("create", "list", "update"), default="create")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--mode", choices=("asgi", "sync"), default="asgi")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--profile", action="store_true", help="cProfile the requests (sync mode)")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--dump", type=Path, help="also write the profile here (pstats format, for callers)")
    args = parser.parse_args()

    import django

    django.setup()
    from django.db import connection
    from django.test.utils import setup_test_environment

    setup_test_environment()  # the test client's responses; it also lets ALLOWED_HOSTS take "testserver"
    from tasks.models import Task

    user, token = make_user()
    task_id = Task.objects.create(user=user, title="profile").id
    connection.close()
    warmup = min(50, args.requests)
    # CPU time, not wall time: what a request costs the machine, not how long it waits on PostgreSQL.
    profiler = cProfile.Profile(time.process_time) if args.profile else None
    if args.mode == "asgi":
        run_asgi(args.op, warmup, min(args.concurrency, warmup), token, task_id)
        began_cpu, began = time.process_time(), time.perf_counter()
        done = run_asgi(args.op, args.requests, args.concurrency, token, task_id)
    else:
        run_sync(args.op, warmup, token, task_id)
        began_cpu, began = time.process_time(), time.perf_counter()
        done = run_sync(args.op, args.requests, token, task_id, profiler)
    cpu, wall = time.process_time() - began_cpu, time.perf_counter() - began
    print(f"{args.op} ({args.mode}, DEBUG={os.environ.get('DEBUG', '')}): {done} requests, "
          f"{cpu * 1000 / done:.2f} ms CPU and {wall * 1000 / done:.2f} ms wall per request")
    if profiler and args.dump:
        profiler.dump_stats(args.dump)
    if profiler:
        for order in ("cumulative", "tottime"):
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats(order).print_stats(args.top)
            print(text.getvalue().split("\n", 6)[-1])  # without the header lines
    return 0


if __name__ == "__main__":
    sys.exit(main())

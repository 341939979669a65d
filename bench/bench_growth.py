"""Growth: how the cost of the work grows with its size (issue #14).

    python bench/bench_growth.py [--part reminders|list|sockets ...] [sizes, see --help]

Each part runs on a scratch database and Kafka namespace of its own (bench/scratch.py), with the
processes started as `make run` starts them (the Procfile's lines, testing/system.py):

- reminders: bench_scheduler.measure — ``--pending`` reminders pending, then a burst of
  ``--burst`` due at the same second and ``--spread`` over ten seconds; lateness p50/p99/max.
- list: ``--tasks`` tasks in the database, ``--user-tasks`` of them one user's, written by one
  INSERT ... SELECT; ``GET /api/tasks/`` against the web tier (gunicorn + uvicorn workers),
  ``--requests`` sequential requests per query shape (first page, deep page, filters, orderings):
  p50/p99 per shape, and the EXPLAIN ANALYZE of the SQL the view runs for each.
- sockets: bench_realtime.fan_out — ``--users`` users with ``--sockets-per-user`` WebSockets
  each; every user changes ``--changes-per-user`` tasks at once; fan-out p50/p99 from each
  change's commit to each socket's receipt, messages missing, and the web tier's RSS per socket.

The defaults are a smoke run; the issue's sizes are
``--pending 1000000 --tasks 1000000 --user-tasks 10000 --users 100 --sockets-per-user 10``.
``main()`` prints a table and returns the figures as a dict (``make bench`` stores them).
"""

import argparse
import re
import statistics
import time
from datetime import timedelta

from scratch import scratch_environment

from testing.stats import percentile

PARTS = ("reminders", "list", "sockets")


# -- list: GET /api/tasks/ over a large table ---------------------------------------------------

def seed_tasks(owner_id, others, total, user_tasks):
    """``user_tasks`` tasks of ``owner_id`` and the rest of ``total`` spread over ``others`` (user
    ids), as PostgreSQL writes them itself, the owner's interleaved with the others' (every
    ``total // user_tasks``-th row, as tasks written over time are), then vacuumed. Each task:
    a third completed, four priorities, one or two of 20 tags, a due date for four in five (two
    months either side of now), created over the past year, "milk" in one title in 50."""
    from django.db import connection

    from tasks.models import Task

    with connection.cursor() as cursor:
        cursor.execute(
            f"""INSERT INTO {Task._meta.db_table}
                    (id, user_id, title, description, completed, completed_at, due_date, remind_at, priority,
                     recurrence_rule, tags, parent_task_id, series_start, version, created_at, updated_at)
                SELECT gen_random_uuid(),
                       CASE WHEN i %% %(step)s = 0 AND i / %(step)s <= %(user_tasks)s THEN %(owner)s
                            ELSE (%(others)s::bigint[])[1 + i %% %(n_others)s] END,
                       'Task ' || i || CASE WHEN h %% 50 = 0 THEN ' buy milk' ELSE '' END, '',
                       h %% 3 = 0, CASE WHEN h %% 3 = 0 THEN now() END,
                       CASE WHEN h %% 5 <> 0 THEN now() + (h %% 120 - 60) * interval '1 day'
                                                       + (h %% 86400) * interval '1 second' END,
                       NULL, 1 + h %% 4, NULL,
                       CASE WHEN h %% 2 = 0 THEN ARRAY['tag' || h %% 20] ELSE ARRAY['tag' || h %% 20, 'tag' || (h + 7) %% 20] END,
                       NULL, NULL, 1, created, created
                FROM generate_series(1, %(total)s::bigint) AS i,
                     -- h: a hash of the row's number, so that the owner's rows (every step-th)
                     -- get every mix of attributes.
                     LATERAL (SELECT hashint8(i)::bigint & 2147483647 AS h) AS r,
                     LATERAL (SELECT now() - (h %% 31536000) * interval '1 second' AS created) AS c""",
            {"owner": owner_id, "others": list(others), "n_others": len(others), "total": total, "user_tasks": user_tasks,
             "step": total // user_tasks},
        )
        cursor.execute(f"VACUUM (ANALYZE) {Task._meta.db_table}")


LAST = "last"  # a page parameter: the last page of what the query matches (the deepest OFFSET)
PAGE_SIZE = 50  # the API's default (tasks.views.TaskPagination)


def list_queries(now):
    """The query shapes of GET /api/tasks/ measured: ``(label, params)``."""
    return [
        ("first page (-created_at)", {}),
        ("last page (-created_at)", {"page": LAST}),
        ("open, by due date", {"completed": "false", "ordering": "due_date"}),
        ("open, by due date, last page", {"completed": "false", "ordering": "due_date", "page": LAST}),
        ("tag", {"tag": "tag7"}),
        ("two tags", {"tag": ["tag7", "tag14"]}),
        ("by priority", {"ordering": "priority"}),
        ("due in the next 7 days", {"due_after": now.isoformat(), "due_before": (now + timedelta(days=7)).isoformat(),
                                    "ordering": "due_date"}),
        ("search", {"search": "milk"}),
    ]


def explain_list(token, params):
    """The SQL that GET /api/tasks/ runs for ``params`` (in-process, through the real view), each
    with its EXPLAIN ANALYZE: ``[(sql, plan_lines)]`` (the authentication's queries left out)."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from tasks.models import Task

    client = Client(HTTP_AUTHORIZATION=f"Token {token}")
    with CaptureQueriesContext(connection) as captured:
        response = client.get("/api/tasks/", params)
    assert response.status_code == 200, response.content
    explained = []
    with connection.cursor() as cursor:
        for query in captured.captured_queries:
            if Task._meta.db_table not in query["sql"]:
                continue
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + query["sql"])
            explained.append((query["sql"], [row[0] for row in cursor.fetchall()]))
    return explained


def timed_gets(client, params, count):
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        response = client.get("/api/tasks/", params=params)
        latencies.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return latencies


def measure_list(total, user_tasks, requests, show_plans=False):
    import logging

    import httpx

    logging.getLogger("httpx").setLevel(logging.WARNING)

    from testing.ports import free_port
    from testing.processes import wait_until_serving
    from testing.system import event_commands, system_process

    with scratch_environment("growthlist") as env:
        from pathlib import Path

        from django.utils import timezone

        from tasks.accounts.tokens import issue
        from tasks.models import User

        owner = User.objects.create(username="growth-owner")
        others = [user.id for user in User.objects.bulk_create(User(username=f"growth-{n}") for n in range(99))]
        print(f"loading {total:,} tasks, {user_tasks:,} of them one user's …", flush=True)
        seeding = time.perf_counter()
        seed_tasks(owner.id, others, total, user_tasks)
        seeding = time.perf_counter() - seeding
        token = issue(owner)
        now = timezone.now()

        port = free_port()
        log_dir = Path(f"/tmp/{env['KAFKA_TOPIC_PREFIX']}logs")
        log_dir.mkdir(parents=True, exist_ok=True)
        web = system_process("web", event_commands()["web"], log_dir, {**env, "WEB_PORT": str(port)}).start()
        rows = []
        try:
            wait_until_serving(f"http://127.0.0.1:{port}", web)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Token {token}"},
                              timeout=60) as client:
                for label, params in list_queries(now):
                    first = {name: value for name, value in params.items() if value != LAST}
                    count = client.get("/api/tasks/", params=first).raise_for_status().json()["count"]  # warms up
                    if params.get("page") == LAST:
                        params = {**params, "page": max(1, -(-count // PAGE_SIZE))}
                    latencies = timed_gets(client, params, requests)
                    plans = explain_list(token, params)
                    rows.append({"query": label, "params": params, "matching": count,
                                 "p50_ms": statistics.median(latencies), "p99_ms": percentile(latencies, 0.99),
                                 "sql": [{"sql": sql, "plan": plan} for sql, plan in plans]})
        finally:
            web.stop()
    print(f"  {total:,} tasks ({user_tasks:,} the user's) loaded in {seeding:.1f} s; {requests} sequential GETs "
          f"per query against the web tier (gunicorn + uvicorn workers)")
    print(f"  {'query':<32} {'matching':>8} {'p50 ms':>7} {'p99 ms':>7}  plan (per SQL: scan, execution time)")
    for row in rows:
        summary = "; ".join(plan_summary(item["plan"]) for item in row["sql"])
        print(f"  {row['query']:<32} {row['matching']:>8,} {row['p50_ms']:>7.1f} {row['p99_ms']:>7.1f}  {summary}")
        if show_plans:
            for item in row["sql"]:
                print("      " + item["sql"])
                print("\n".join("        " + line for line in item["plan"]))
    return {"tasks": total, "user_tasks": user_tasks, "requests_per_query": requests, "seed_seconds": seeding,
            "queries": rows}


def plan_summary(plan):
    """The plan's scans (index or table, by name) and its execution time, in one short line."""
    scans = []
    for line in plan:
        text = line.strip().removeprefix("->").strip()
        if " on " in text and ("Scan" in text):
            scans.append(re.sub(r" on tasks_task(?= |$)", "", text.split("  (")[0]))
    executed = next((line.split(":", 1)[1].strip() for line in plan if line.startswith("Execution Time")), "?")
    return f"{', '.join(scans) or plan[0].split('  (')[0]} {executed}"


# -- sockets: a burst fanned out to many WebSockets ---------------------------------------------

WARM_UP_SOCKETS = 10
CHANGING_THREADS = 8
CONNECTING_AT_ONCE = 50


def socket_clients(pipe, url, tokens, sockets_per_user):
    """The load generator, in a process of its own: ``sockets_per_user`` WebSockets per token,
    recording each sync.task_changed's arrival ``(socket, user index, task_id, time.time())``.
    Driven by ``pipe``: see ``measure_sockets`` for the conversation."""
    import asyncio

    asyncio.run(_socket_clients(pipe, url, tokens, sockets_per_user))


async def _socket_clients(pipe, url, tokens, sockets_per_user):
    import asyncio
    import json

    import psutil
    import websockets

    loop = asyncio.get_running_loop()
    arrivals, failures = [], []
    seen = set()  # (socket, task_id)
    arrived = asyncio.Event()

    async def hold(socket_index, user_index, opened):
        try:
            async with websockets.connect(url, additional_headers={"Authorization": f"Token {tokens[user_index]}"},
                                          max_queue=None, open_timeout=120, ping_interval=None) as socket:
                opened.set()
                async for raw in socket:
                    received = time.time()
                    message = json.loads(raw)
                    if message.get("event_type") == "sync.task_changed":
                        arrivals.append((socket_index, user_index, message["data"]["task_id"], received))
                        seen.add((socket_index, message["data"]["task_id"]))
                        arrived.set()
        except (OSError, websockets.WebSocketException) as exc:
            failures.append(repr(exc))
        finally:
            opened.set()

    async def open_sockets(plan):
        holders, gate = [], asyncio.Semaphore(CONNECTING_AT_ONCE)

        async def open_one(socket_index, user_index):
            async with gate:
                opened = asyncio.Event()
                holders.append(asyncio.create_task(hold(socket_index, user_index, opened)))
                await opened.wait()

        await asyncio.gather(*(open_one(*pair) for pair in plan))
        return holders

    # Warm-up: the web workers' first sockets load what every later one shares.
    warm = await open_sockets([(-1 - n, n % len(tokens)) for n in range(WARM_UP_SOCKETS)])
    for holder in warm:
        holder.cancel()
    await asyncio.gather(*warm, return_exceptions=True)
    pipe.send(("warm",))
    await loop.run_in_executor(None, pipe.recv)  # ("connect",)
    plan = [(user * sockets_per_user + n, user) for user in range(len(tokens)) for n in range(sockets_per_user)]
    failures.clear()
    holders = await open_sockets(plan)
    pipe.send(("connected", len(plan) - len(failures), failures[:5]))
    while True:
        command, *rest = await loop.run_in_executor(None, pipe.recv)
        if command == "stop":
            break
        wanted, timeout = rest  # {(socket, task_id)} to wait for
        deadline = loop.time() + timeout
        while not wanted <= seen and loop.time() < deadline:
            arrived.clear()
            try:
                await asyncio.wait_for(arrived.wait(), max(deadline - loop.time(), 0.01))
            except TimeoutError:
                pass
        pipe.send(("arrivals", arrivals, psutil.Process().cpu_times()[:2]))
    for holder in holders:
        holder.cancel()
    await asyncio.gather(*holders, return_exceptions=True)


def tree_rss(pid):
    """Resident memory of a process and all its descendants (the gunicorn master and its workers)."""
    import psutil

    root = psutil.Process(pid)
    return sum(process.memory_info().rss for process in [root, *root.children(recursive=True)])


def change_all(tasks, context):
    """Each task changed by its own transaction, as its PATCH would, from eight threads at once
    (eight API clients); returns ``{task_id: the commit's time.time()}``."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection, transaction

    from tasks.services import task_update

    committed = {}

    def change(chunk):
        try:
            for task in chunk:
                with transaction.atomic():
                    task_update(task=task, context=context, title=f"{task.title} (changed)")
                    transaction.on_commit(lambda task_id=str(task.id): committed.__setitem__(task_id, time.time()))
        finally:
            connection.close()

    with ThreadPoolExecutor(CHANGING_THREADS) as pool:
        list(pool.map(change, [tasks[n::CHANGING_THREADS] for n in range(CHANGING_THREADS)]))
    return committed


def measure_sockets(users, sockets_per_user, changes_per_user, grace=30):
    import multiprocessing
    import uuid
    from pathlib import Path

    from testing.ports import free_port
    from testing.processes import wait_until_serving
    from testing.system import event_commands, system_process

    with scratch_environment("growthws", CHANNEL_LAYER_PREFIX=f"growthws-{uuid.uuid4().hex[:8]}-") as env:
        from events.models import OutboxEvent
        from tasks.accounts.tokens import issue
        from tasks.events import EventContext
        from tasks.models import User
        from tasks.services import task_create

        context = EventContext(source="todo-api", correlation_id="growth")
        owners = User.objects.bulk_create(User(username=f"growth-ws-{n}") for n in range(users))
        tokens = [issue(owner) for owner in owners]
        # Created before the processes start: their own changes reach nobody, no socket is open yet.
        tasks = [[task_create(user=owner, context=context, title=f"Task {n}") for n in range(changes_per_user)]
                 for owner in owners]
        warm_up = task_create(user=owners[0], context=context, title="warm-up")

        port = free_port()
        log_dir = Path(f"/tmp/{env['KAFKA_TOPIC_PREFIX']}logs")
        log_dir.mkdir(parents=True, exist_ok=True)
        commands = event_commands()
        processes = {name: system_process(name, commands[name], log_dir, {**env, "WEB_PORT": str(port)}).start()
                     for name in ("web", "relay", "realtime")}
        spawn = multiprocessing.get_context("spawn")
        pipe, client_end = spawn.Pipe()
        clients = spawn.Process(target=socket_clients, args=(client_end, f"ws://127.0.0.1:{port}/ws/sync/", tokens,
                                                             sockets_per_user))
        try:
            wait_until_serving(f"http://127.0.0.1:{port}", processes["web"])
            web_pid = processes["web"].process.pid
            clients.start()
            assert pipe.poll(120), "the socket clients did not warm up"
            pipe.recv()
            idle_rss = tree_rss(web_pid)
            pipe.send(("connect",))
            assert pipe.poll(300), "the socket clients did not connect"
            _, connected, failures = pipe.recv()
            loaded_rss = tree_rss(web_pid)
            # The realtime bridge joins its group with the first change: wait for it to arrive.
            change_all([warm_up], context)
            pipe.send(("wait", {(0, str(warm_up.id))}, 120))
            _, arrivals, _ = pipe.recv()
            if not any(task_id == str(warm_up.id) for _, _, task_id, _ in arrivals):
                raise SystemExit(f"the warm-up change never reached a socket; logs in {log_dir}")
            burst = [task for user_tasks in tasks for task in user_tasks]
            burst_after = OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first()
            task_ids = {str(task.id): user for user, user_tasks in enumerate(tasks) for task in user_tasks}
            started = time.time()
            committed = change_all(burst, context)
            burst_seconds = time.time() - started
            wanted = {(user * sockets_per_user + n, task_id) for task_id, user in task_ids.items()
                      for n in range(sockets_per_user)}
            pipe.send(("wait", wanted, grace))
            _, arrivals, client_cpu = pipe.recv()
            # Where the time goes: when the relay marked each change's sync event sent (after Kafka
            # acknowledged it), against its commit; the rest is the realtime bridge and the web tier.
            sent = dict(OutboxEvent.objects.filter(event_type="sync.task_changed", key__in=list(committed),
                                                   sent_at__isnull=False, id__gt=burst_after)
                        .values_list("key", "sent_at"))
            pipe.send(("stop",))
            clients.join(60)
        finally:
            if clients.is_alive():
                clients.kill()
            for process in processes.values():
                process.stop()
        # An exception in the web tier (a socket's consumer failing to join or leave its group, say)
        # counts against the run even when every message arrived.
        web_errors = processes["web"].log().count("Exception in ASGI application")

    first = {}
    for socket_index, _, task_id, received in arrivals:
        if task_id in committed:
            first.setdefault((socket_index, task_id), received)
    latencies = [(first[pair] - committed[pair[1]]) * 1000 for pair in wanted if pair in first]
    missing = sum(1 for pair in wanted if pair not in first)
    to_kafka = [(sent[task_id].timestamp() - committed[task_id]) * 1000 for task_id in committed if task_id in sent]
    sockets = users * sockets_per_user
    result = {
        "users": users, "sockets": sockets, "connected": connected, "connect_failures": failures,
        "changes": len(committed), "burst_seconds": burst_seconds, "deliveries_expected": len(wanted),
        "missing": missing, "p50_ms": statistics.median(latencies) if latencies else None,
        "p99_ms": percentile(latencies, 0.99) if latencies else None, "max_ms": max(latencies, default=None),
        "web_rss_idle_mib": idle_rss / 2**20, "web_rss_loaded_mib": loaded_rss / 2**20,
        "rss_per_socket_kib": (loaded_rss - idle_rss) / max(connected, 1) / 1024,
        "client_cpu_seconds": sum(client_cpu), "web_errors": web_errors,
        "relay_p50_ms": statistics.median(to_kafka) if to_kafka else None,
        "relay_p99_ms": percentile(to_kafka, 0.99) if to_kafka else None,
    }
    print(f"  {sockets:,} sockets of {users} users ({result['connected']:,} connected); {len(committed):,} changes "
          f"committed in {burst_seconds:.1f} s from 8 threads; {len(wanted):,} deliveries expected")
    if latencies:
        print(f"  fan-out commit -> socket: p50 {result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms, "
              f"max {result['max_ms']:.0f} ms; missing {missing:,}")
    else:
        print(f"  fan-out: nothing arrived; missing {missing:,}")
    if to_kafka:
        print(f"  of which commit -> marked sent by the relay (after Kafka's ack): p50 {result['relay_p50_ms']:.0f} ms, "
              f"p99 {result['relay_p99_ms']:.0f} ms ({len(to_kafka):,} changes)")
    print(f"  web tier RSS {result['web_rss_idle_mib']:.0f} MiB idle, {result['web_rss_loaded_mib']:.0f} MiB with the "
          f"sockets: {result['rss_per_socket_kib']:.0f} KiB per socket; socket clients' CPU {result['client_cpu_seconds']:.1f} s")
    print(f"  exceptions in the web tier's log (the sockets' closing included): {web_errors:,}")
    return result


# -- the runner ---------------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=PARTS, nargs="+", default=list(PARTS))
    parser.add_argument("--pending", type=int, default=100_000, help="reminders pending (issue: 1,000,000)")
    parser.add_argument("--burst", type=int, default=2_000, help="reminders due at the same second")
    parser.add_argument("--spread", type=int, default=500, help="reminders due over the ten seconds after")
    parser.add_argument("--tasks", type=int, default=100_000, help="tasks in the database (issue: 1,000,000)")
    parser.add_argument("--user-tasks", type=int, default=10_000, help="of them, the measured user's")
    parser.add_argument("--requests", type=int, default=30, help="GETs per query shape")
    parser.add_argument("--plans", action="store_true", help="print each query's SQL and whole plan")
    parser.add_argument("--users", type=int, default=20, help="users with sockets (issue: 100)")
    parser.add_argument("--sockets-per-user", type=int, default=5, help="WebSockets per user (issue: 10)")
    parser.add_argument("--changes-per-user", type=int, default=10, help="tasks each user changes in the burst")
    args = parser.parse_args(argv)

    if len(args.part) == 1:
        return {args.part[0]: run_part(args.part[0], args)}
    # Django is set up once per process, on one scratch database: each part gets a process of its own.
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    results = {}
    for part in args.part:
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            results[part] = pool.submit(run_part, part, args).result()
    return results


def run_part(part, args):
    print(f"== growth: {part}", flush=True)
    if part == "reminders":
        from bench_scheduler import main as reminders_main

        return reminders_main(["--pending", str(args.pending), "--burst", str(args.burst), "--spread", str(args.spread)])
    if part == "list":
        return measure_list(args.tasks, args.user_tasks, args.requests, show_plans=args.plans)
    return measure_sockets(args.users, args.sockets_per_user, args.changes_per_user)

if __name__ == "__main__":
    main()

"""Fault drills: kill -9 and restart each part of the system under load, then prove nothing was lost.

    python bench/faults.py [--rate 40] [--changes 3000]        (make faults)

Everything runs on loopback and on PRIVATE infrastructure, so the shared Kafka/PostgreSQL of
other work are never touched: a PostgreSQL cluster initdb'ed into a temporary directory (run
as the `postgres` OS user when we are root), a single-node Kafka broker from the cached jars
(testing/stack.py), and the processes of `make run` that carry events (testing/system.py: web,
relay and every registered consumer's) as subprocesses pointed at them (Redis,
which only carries WebSocket pushes, is the shared one under a private channel prefix).

A workload of several thousand task changes goes through the HTTP API at a paced rate from
a few client threads: creates (plain, recurring, and with a reminder due during the run),
title updates, and completions of recurring tasks. Meanwhile, one at a time, each process,
then the broker, then PostgreSQL, is killed with SIGKILL and restarted. A request that fails
(connection refused, 5xx while PostgreSQL is down) is retried, bounded. A worker that exits
on its own while its dependency is down is restarted, as a process manager would, and counted.

Afterwards, with every process back, it waits for the system to settle and checks against the
database and the topics:
  - every committed outbox event is on its topic (no loss), every copy of an event_id carries
    the same payload (re-sends after a relay kill are allowed: delivery is at-least-once and
    consumers dedupe by event_id), and on task-events the versions of each task key increase;
  - the audit trail has every task event exactly once;
  - every completion of a recurring task produced exactly one next occurrence;
  - every reminder that came due produced exactly one notification.
It prints a table of what was injected and what was found, and exits 1 if a check failed.
"""

import argparse
import collections
import json
import logging
import os
import queue
import random
import shutil
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from testing.ports import free_port  # noqa: E402
from testing.processes import serves  # noqa: E402
from testing.stack import PrivateStack  # noqa: E402
from testing.system import event_processes  # noqa: E402
from testing.waits import wait_until  # noqa: E402

SETTLE_SECONDS = 180
REQUEST_ATTEMPTS = 60  # per change; 0.5 s apart: rides out a PostgreSQL or web restart


class Workload:
    """Paced task changes over HTTP from a few threads; records what the API acknowledged."""

    def __init__(self, base_url, token, changes, rate, threads=4):
        import httpx

        self.httpx = httpx
        self.base_url, self.token, self.rate, self.threads = base_url, token, rate, threads
        self.lock = threading.Lock()
        self.acknowledged = collections.Counter()
        self.retried = 0
        self.failed = collections.Counter()
        self.created = {"plain": [], "recurring": [], "reminder": []}
        n_recurring = changes // 8
        n_reminder = changes // 8
        n_plain = changes // 4
        n_complete = n_recurring
        n_update = changes - n_recurring - n_reminder - n_plain - n_complete
        self.plan = ["create-recurring"] * n_recurring + ["create-reminder"] * n_reminder + ["create-plain"] * n_plain
        random.Random(9).shuffle(self.plan)
        self.second_phase = ["update"] * n_update + ["complete-recurring"] * n_complete
        random.Random(10).shuffle(self.second_phase)
        self.total = len(self.plan) + len(self.second_phase)
        self.done = threading.Event()

    def _request(self, client, method, path, body=None):
        for attempt in range(REQUEST_ATTEMPTS):
            try:
                response = client.request(method, path, json=body)
                if response.status_code < 500:
                    return response
            except self.httpx.TransportError:
                pass
            with self.lock:
                self.retried += 1
            time.sleep(0.5)
        return None

    def _do(self, client, op, rng):
        now = datetime.now(timezone.utc)
        if op.startswith("create"):
            kind = op.split("-")[1]
            body = {"title": f"{kind} {rng.random():.6f}"}
            if kind == "recurring":
                body.update(recurrence_rule="FREQ=DAILY", due_date=(now + timedelta(days=1)).isoformat())
            elif kind == "reminder":
                # Due while the drill (and its faults) still run: 5 s to 60 s ahead.
                body["remind_at"] = (now + timedelta(seconds=rng.uniform(5, 60))).isoformat()
                body["due_date"] = (now + timedelta(hours=1)).isoformat()
            response = self._request(client, "POST", "/api/tasks/", body)
            ok = response is not None and response.status_code == 201
            if ok:
                with self.lock:
                    self.created[kind].append(response.json()["id"])
        elif op == "update":
            with self.lock:
                pool = self.created["plain"] + self.created["reminder"]
                task_id = rng.choice(pool) if pool else None
            if task_id is None:
                return
            response = self._request(client, "PATCH", f"/api/tasks/{task_id}/", {"title": f"renamed {rng.random():.6f}"})
            ok = response is not None and response.status_code == 200
        else:  # complete-recurring: each recurring task once
            with self.lock:
                task_id = self.created["recurring"].pop() if self.created["recurring"] else None
                if task_id:
                    self.created.setdefault("completed", []).append(task_id)
            if task_id is None:
                return
            response = self._request(client, "POST", f"/api/tasks/{task_id}/complete/")
            ok = response is not None and response.status_code == 200
        with self.lock:
            (self.acknowledged if ok else self.failed)[op] += 1

    def run(self):
        work = queue.Queue()
        interval = self.threads / self.rate

        def worker(index):
            rng = random.Random(index)
            with self.httpx.Client(base_url=self.base_url, headers={"Authorization": f"Token {self.token}"},
                                   timeout=30) as client:
                next_at = time.monotonic()
                while True:
                    try:
                        op = work.get_nowait()
                    except queue.Empty:
                        return
                    self._do(client, op, rng)
                    next_at += interval
                    time.sleep(max(0.0, next_at - time.monotonic()))

        for phase in (self.plan, self.second_phase):
            for op in phase:
                work.put(op)
            threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(self.threads)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        self.done.set()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=3000, help="task changes sent through the API")
    parser.add_argument("--rate", type=float, default=40, help="changes per second (paced)")
    parser.add_argument("--gap", type=float, default=4, help="seconds of load between two faults")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="faults-"))
    os.chmod(workdir, 0o755)
    print(f"fault drill in {workdir} (logs kept there)", flush=True)
    # The workload is one user scheduling a reminder every eighth change: far beyond a person's cap.
    stack = PrivateStack(workdir, "faults", REMINDERS_PER_USER_PER_HOUR=str(args.changes))
    postgres, broker, env = stack.postgres, stack.broker, stack.env
    stack.start()
    from tasks.models import User
    from tasks.accounts.tokens import issue

    user = User.objects.create_user(username="drill", password="drill-password-1")
    token = issue(user)
    from django.db import connections

    connections.close_all()

    web_port = free_port()
    base_url = f"http://127.0.0.1:{web_port}"
    processes = event_processes(workdir, env, web_port)
    for process in processes.values():
        process.start()

    logging.getLogger("httpx").setLevel(logging.WARNING)

    def web_ready():
        return serves(base_url)

    wait_until(web_ready, 60, "web")
    started = time.monotonic()
    workload = Workload(base_url, token, args.changes, args.rate)
    load = threading.Thread(target=workload.run, daemon=True)
    load.start()

    injected = []
    self_exits = collections.Counter()

    def supervise():
        """Restart what exited on its own (a process manager's job), counting it."""
        for name, process in processes.items():
            if not process.alive():
                self_exits[name] += 1
                process.start()

    def fault(target, kill, restart, ready):
        time.sleep(args.gap)
        supervise()
        t0 = time.monotonic()
        kill()
        time.sleep(2)  # down long enough for work to pile up and clients to notice
        restart()
        wait_until(ready, 180, f"{target} back")
        injected.append((target, "SIGKILL + restart", round(time.monotonic() - t0, 1)))
        print(f"  killed and restarted {target} at t={t0 - started:.0f}s; back after {injected[-1][2]} s", flush=True)

    try:
        # Every process in turn, the web app last (the workload's own door).
        for name in sorted(processes, key=lambda name: name == "web"):
            process = processes[name]
            fault(name, process.kill, process.start, web_ready if name == "web" else process.alive)
        fault("kafka broker", broker.kill, lambda: broker.start(), broker.answers)
        fault("postgresql", postgres.kill, postgres.start, postgres.answers)
        supervise()
        load.join(600)
        print(f"  workload done after {time.monotonic() - started:.0f}s; settling…", flush=True)
        # Reminders due up to now; give the rest of the pipeline time to catch up.
        outcome = settle_and_check(workload, processes, supervise)
    finally:
        for process in processes.values():
            process.stop()
        stack.stop()

    print_report(args, injected, workload, self_exits, outcome, time.monotonic() - started)
    if all(ok for _, _, _, ok in outcome):
        shutil.rmtree(workdir, ignore_errors=True)
        return 0
    print(f"logs kept in {workdir}")
    return 1


def settle_and_check(workload, processes, supervise):
    from django.db import close_old_connections

    from audit.models import AuditEntry
    from events.models import OutboxEvent
    from notifications.models import Notification
    from tasks.models import Task

    due_before = datetime.now(timezone.utc)

    def settled():
        supervise()
        close_old_connections()
        try:
            if OutboxEvent.objects.filter(sent_at__isnull=True).exists():
                return False
            task_events = OutboxEvent.objects.filter(topic="task-events").count()
            completions = Task.objects.filter(completed=True).exclude(recurrence_rule=None).count()
            due = Task.objects.filter(remind_at__lte=due_before, completed=False).count()
            return (
                AuditEntry.objects.count() >= task_events
                and Task.objects.exclude(parent_task_id=None).count() >= completions
                and Notification.objects.count() >= due
            )
        except Exception:  # noqa: BLE001 - the database may still be recovering
            return False

    try:
        wait_until(settled, SETTLE_SECONDS, "settling", interval=0.25)
    except TimeoutError as error:
        print(f"  {error}; checking anyway", flush=True)
    time.sleep(3)  # let any straggling duplicate land before counting
    return check(due_before)


def check(due_before):
    from django.db.models import Count

    from audit.models import AuditEntry
    from events.models import OutboxEvent
    from notifications.models import Notification
    from tasks.models import Task
    from testing.kafka import TopicReader

    outcome = []
    outbox = {str(e): (t, topic) for e, t, topic in OutboxEvent.objects.values_list("event_id", "event_type", "topic")}
    reader = TopicReader(["task-events", "reminders", "task-updates"])
    messages = reader.read_to_end(timeout=120)
    reader.close()
    copies = collections.defaultdict(list)
    for message in messages:
        copies[message.event["event_id"]].append(message)
    missing = [e for e in outbox if e not in copies]
    unknown = [e for e in copies if e not in outbox]
    resent = sum(len(c) - 1 for c in copies.values())
    differing = [e for e, c in copies.items() if any(m.event != c[0].event or m.key != c[0].key for m in c)]
    outcome.append(("events on Kafka", f"{len(outbox)} committed, {len(copies)} distinct on topics",
                    f"{len(missing)} missing, {len(unknown)} never committed, {resent} re-sent copies, "
                    f"{len(differing)} copies differing", not missing and not unknown and not differing))

    last_version, out_of_order, seen = {}, 0, set()
    for message in messages:
        if message.topic != "task-events" or message.event["event_id"] in seen:
            continue
        seen.add(message.event["event_id"])
        version = message.event["data"]["version"]
        if version <= last_version.get(message.key, 0) and message.event["event_type"] != "task.deleted":
            out_of_order += 1
        last_version[message.key] = version
    outcome.append(("per-task order", f"{len(last_version)} task keys on task-events",
                    f"{out_of_order} version regressions", out_of_order == 0))

    # Independently of the outbox: every committed version of every task has its event on task-events.
    versions = collections.defaultdict(set)
    for message in messages:
        if message.topic == "task-events":
            versions[message.key].add(message.event["data"]["version"])
    tasks = dict(Task.objects.values_list("id", "version"))
    gaps = sum(1 for task_id, version in tasks.items() if not set(range(1, version + 1)) <= versions[str(task_id)])
    outcome.append(("committed changes", f"{len(tasks)} tasks, {sum(tasks.values())} versions in the database",
                    f"{gaps} tasks with a version missing on task-events", gaps == 0))

    task_events = {e for e, (t, topic) in outbox.items() if topic == "task-events"}
    audited = collections.Counter(str(e) for e in AuditEntry.objects.values_list("event_id", flat=True))
    outcome.append(("audit trail", f"{len(task_events)} task events",
                    f"{len(task_events - audited.keys())} missing, {sum(1 for c in audited.values() if c > 1)} twice, "
                    f"{len(audited.keys() - task_events)} unknown",
                    task_events == audited.keys() and all(c == 1 for c in audited.values())))

    completed = set(Task.objects.filter(completed=True).exclude(recurrence_rule=None).values_list("id", flat=True))
    children = collections.Counter(Task.objects.filter(parent_task_id__in=completed).values_list("parent_task_id", flat=True))
    no_next = len(completed - children.keys())
    outcome.append(("recurring completions", f"{len(completed)} completed",
                    f"{no_next} without next, {sum(1 for c in children.values() if c > 1)} with several",
                    no_next == 0 and all(c == 1 for c in children.values())))

    due = set(Task.objects.filter(remind_at__lte=due_before, completed=False).values_list("id", flat=True))
    notified = dict(Notification.objects.values("task_id").annotate(n=Count("id")).values_list("task_id", "n"))
    silent = len(due - notified.keys())
    twice = sum(1 for t in due if notified.get(t, 0) > 1)
    outcome.append(("due reminders", f"{len(due)} due", f"{silent} without notification, {twice} with several",
                    silent == 0 and twice == 0))
    return outcome


def print_report(args, injected, workload, self_exits, outcome, elapsed):
    print()
    print(f"machine: {os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM; "
          f"drill {elapsed:.0f} s")
    print(f"workload: {workload.total} changes planned at {args.rate:g}/s; acknowledged "
          f"{dict(workload.acknowledged)}; gave up {dict(workload.failed) or 0}; {workload.retried} retries")
    print()
    print(f"{'injected fault':<22} {'how':<20} {'back after (s)':>14}")
    for target, how, seconds in injected:
        print(f"{target:<22} {how:<20} {seconds:>14}")
    print(f"processes that exited on their own and were restarted: {dict(self_exits) or 'none'}")
    print()
    print(f"{'check':<22} {'scope':<38} {'found':<62} result")
    for name, scope, found, ok in outcome:
        print(f"{name:<22} {scope:<38} {found:<62} {'PASS' if ok else 'FAIL'}")
    print(json.dumps({"injected": injected, "checks": [dict(zip(("check", "scope", "found", "ok"), row)) for row in outcome]}))


if __name__ == "__main__":
    sys.exit(main())

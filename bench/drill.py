"""Hostile drill: normal users keep working while an attacker throws every bad input we know at each door.

    python bench/drill.py [--seconds 30] [--rate 10]        (make drill)

Everything runs on PRIVATE infrastructure, as in bench/faults.py (whose harness this reuses): a
PostgreSQL cluster and a Kafka broker of its own, the event-carrying processes of `make run`
as subprocesses, the shared Redis under a private channel prefix.

Two legitimate users, alice and bob, each keep a WebSocket open and change their tasks through
the API at a paced rate (creates, renames, completions, a reminder now and then). The drill runs
that workload twice for the same time: once alone (the baseline), then while an attacker,
mallory, goes through every door:

  REST      oversized and deeply nested bodies, fields over their limits, recurrence rules that
            explode or never occur, absurd pages, another user's task ids, a 4-way delete race;
  sign-in   password guessing at /api/auth/token/ and /login/, a registration flood, a bad token;
  chat/MCP  absurd phrases, oversized and malformed JSON-RPC, no token;
  /dapr/    an anonymous forged reminder.due on the web port;
  WebSocket a handshake from another origin;
  Kafka     raw messages produced straight onto the topics (an attacker with topic access):
            unparsable bytes of every kind, a flood of junk, and well-formed forged events —
            a reminder.due naming alice, a reminder.scheduled of alice's task with a made-up
            title, a task.completed of alice's recurring task, a sync.task_changed addressed to alice.

It prints each attack with the answer it got and the answer the contract demands, then checks
that every legitimate change reached Kafka, the audit trail and its owner's socket, that no
forged event had an effect, that the junk sits in the dead-letter topics, and that no process
had to be restarted; and it compares the legitimate traffic's freshness (request sent -> change
on the owner's socket) under attack with the baseline. Exit 1 if any row failed.
"""

import argparse
import asyncio
import collections
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from testing.ports import free_port  # noqa: E402
from testing.processes import serves  # noqa: E402
from testing.stack import PrivateStack  # noqa: E402
from testing.stats import percentile  # noqa: E402
from testing.system import event_processes  # noqa: E402
from testing.waits import wait_until  # noqa: E402

PASSWORD = "drill-passphrase-1"
SETTLE_SECONDS = 60
MARK = "drill-attack"  # the key of every raw message the attacker produces, to find its dead letters


# ---------------------------------------------------------------------------------------------- legit users


class Owner:
    """A legitimate user: an API client, an open WebSocket, and when each change was sent and seen."""

    def __init__(self, name, token, user_id):
        self.name, self.token, self.user_id = name, token, user_id
        self.sent = {}  # (task_id, version) -> perf_counter when its request was sent
        self.seen = {}  # (task_id, version) -> perf_counter when its sync event reached the socket
        self.event_ids_seen = set()
        self.tasks = []  # open plain tasks of this user
        self.recurring = []  # recurring tasks (never completed by the workload: the forgeries target them)
        self.reminders = []  # task ids with a reminder due during the drill
        self.connected = asyncio.Event()
        self.arrived = asyncio.Event()

    async def listen(self, url, websockets):
        async with websockets.connect(url, additional_headers={"Authorization": f"Token {self.token}"},
                                      max_queue=None) as socket:
            self.connected.set()
            async for raw in socket:
                now = time.perf_counter()
                message = json.loads(raw)
                self.event_ids_seen.add(message.get("event_id"))
                if message.get("event_type") == "sync.task_changed":
                    data = message["data"]
                    self.seen.setdefault((data["task_id"], data["task"]["version"]), now)
                    self.arrived.set()

    async def wait_seen(self, keys, timeout):
        deadline = time.perf_counter() + timeout
        while not keys <= self.seen.keys() and time.perf_counter() < deadline:
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), max(deadline - time.perf_counter(), 0.01))
            except TimeoutError:
                pass
        return keys - self.seen.keys()


async def legit_phase(owners, client_of, rate, seconds, rng):
    """Paced changes of the owners' tasks for ``seconds``; returns the (owner, key) pairs acknowledged."""
    acknowledged = []
    failures = collections.Counter()
    in_flight = set()

    async def change(owner):
        client = client_of[owner.name]
        now = datetime.now(timezone.utc)
        roll = rng.random()
        if roll < 0.5 or len(owner.tasks) < 3:
            body = {"title": f"{owner.name} {rng.random():.6f}", "tags": ["drill"]}
            if roll < 0.08:  # now and then a reminder, due within the drill
                body |= {"due_date": (now + timedelta(hours=1)).isoformat(),
                         "remind_at": (now + timedelta(seconds=rng.uniform(2, 6))).isoformat()}
            method, path = "POST", "/api/tasks/"
        elif roll < 0.8:
            method, path, body = "PATCH", f"/api/tasks/{rng.choice(owner.tasks)}/", {"title": f"renamed {rng.random():.6f}"}
        else:
            task_id = owner.tasks.pop(rng.randrange(len(owner.tasks)))
            method, path, body = "POST", f"/api/tasks/{task_id}/complete/", None
        sent = time.perf_counter()
        try:
            response = await client.request(method, path, json=body)
        except Exception as exc:  # noqa: BLE001 - counted: a legitimate request that got no answer
            failures[type(exc).__name__] += 1
            return
        if response.status_code not in (200, 201):
            failures[f"{method} {response.status_code}"] += 1
            return
        task = response.json()
        key = (task["id"], task["version"])
        owner.sent[key] = sent
        acknowledged.append((owner, key))
        if method == "POST" and path == "/api/tasks/":
            owner.tasks.append(task["id"])
            if task["remind_at"]:
                owner.reminders.append(task["id"])

    interval = 1 / rate
    started = time.perf_counter()
    tick = 0
    while time.perf_counter() - started < seconds:
        owner = owners[tick % len(owners)]
        job = asyncio.ensure_future(change(owner))
        in_flight.add(job)
        job.add_done_callback(in_flight.discard)
        tick += 1
        await asyncio.sleep(max(0.0, started + tick * interval - time.perf_counter()))
    if in_flight:
        await asyncio.gather(*in_flight)
    return acknowledged, failures


def freshness(acknowledged):
    delays = [(owner.seen[key] - owner.sent[key]) * 1000 for owner, key in acknowledged if key in owner.seen]
    lost = sum(1 for owner, key in acknowledged if key not in owner.seen)
    return {"changes": len(acknowledged), "p50_ms": percentile(delays, 0.5), "p99_ms": percentile(delays, 0.99),
            "max_ms": max(delays, default=float("nan")), "lost": lost}


# ---------------------------------------------------------------------------------------------- the attacker


class Attacker:
    """Mallory: goes through every door once, then keeps flooding the cheap ones until told to stop."""

    def __init__(self, base_url, ws_url, token, victims, producer, topic_name, make_event):
        import httpx

        self.httpx = httpx
        self.base_url, self.ws_url, self.token = base_url, ws_url, token
        self.victims = victims  # name -> Owner
        self.producer, self.topic_name, self.make_event = producer, topic_name, make_event
        self.rows = []  # (door, attack, expected, answer, ok)
        self.forged = {}  # what the forgeries were, to check they had no effect
        self.raw_sent = collections.Counter()  # base topic -> raw messages produced
        self.flooded = collections.Counter()
        self.stop = threading.Event()

    def row(self, door, attack, expected, answer, ok):
        self.rows.append((door, attack, expected, answer, bool(ok)))

    def client(self, token=None, **kwargs):
        headers = {"Authorization": f"Token {token or self.token}"} if token is not False else {}
        return self.httpx.Client(base_url=self.base_url, headers=headers, timeout=30, **kwargs)

    def timed(self, call):
        started = time.perf_counter()
        try:
            response = call()
        except self.httpx.HTTPError as exc:
            return None, time.perf_counter() - started, type(exc).__name__
        return response, time.perf_counter() - started, str(response.status_code)

    def expect(self, door, attack, call, statuses, within=None):
        """One request; ok when its status is one of ``statuses`` (and it answered within ``within`` s)."""
        response, seconds, answer = self.timed(call)
        ok = response is not None and response.status_code in statuses and (within is None or seconds <= within)
        if response is not None and response.status_code >= 400:
            answer += f" {_brief(response)}"
        if within is not None:
            answer += f" in {seconds * 1000:.0f} ms"
        self.row(door, attack, "/".join(map(str, statuses)) + (f" within {within:g} s" if within else ""), answer, ok)
        return response

    def run(self):
        with self.client() as api:
            self.rest(api)
            self.recurrence_rules(api)
            self.delete_race(api)
            self.chat_and_mcp(api)
        self.sign_in()
        self.dapr_and_websocket()
        self.kafka()
        while not self.stop.is_set():  # keep the pressure on for the rest of the phase
            self.flood_once()

    # -- doors ---------------------------------------------------------------------------------

    def rest(self, api):
        alice = self.victims["alice"]
        self.expect("REST", "description of 1,000,000 characters",
                    lambda: api.post("/api/tasks/", json={"title": "x", "description": "A" * 1_000_000}), (400, 413))
        self.expect("REST", "2 MiB request body", lambda: api.post(
            "/api/tasks/", content=b'{"title": "' + b"x" * (2 << 20) + b'"}', headers={"Content-Type": "application/json"}),
            (413,))
        self.expect("REST", "'[' x 5000 as the JSON body", lambda: api.post(
            "/api/tasks/", content=b"[" * 5000, headers={"Content-Type": "application/json"}), (400,))
        self.expect("REST", "title nested 100,000 deep", lambda: api.post(
            "/api/tasks/", content=b'{"title": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            headers={"Content-Type": "application/json"}), (400,))
        self.expect("REST", "10,000 tags", lambda: api.post("/api/tasks/", json={"title": "x", "tags": ["t"] * 10_000}),
                    (400,))
        self.expect("REST", "title of 201 characters", lambda: api.post("/api/tasks/", json={"title": "x" * 201}), (400,))
        self.expect("REST", "due date in year 9999 + 14 h offset",
                    lambda: api.post("/api/tasks/", json={"title": "x", "due_date": "9999-12-31T23:59:59-14:00"}),
                    (201, 400))
        self.expect("REST", "page 99,999,999,999", lambda: api.get("/api/tasks/?page=99999999999"), (404,))
        self.expect("REST", "page_size 1,000,000,000", lambda: api.get("/api/tasks/?page_size=1000000000"), (200,))
        victim_task = alice.tasks[0]
        self.expect("REST", "read alice's task", lambda: api.get(f"/api/tasks/{victim_task}/"), (404,))
        self.expect("REST", "rename alice's task", lambda: api.patch(f"/api/tasks/{victim_task}/", json={"title": "mine"}),
                    (404,))
        self.expect("REST", "complete alice's task", lambda: api.post(f"/api/tasks/{victim_task}/complete/"), (404,))
        with self.client(token="0" * 64) as forged:
            self.expect("REST", "made-up token", lambda: forged.get("/api/tasks/"), (401,))
        now = datetime.now(timezone.utc)
        self.expect("REST", "title with CR/LF and a reminder in 2 s", lambda: api.post("/api/tasks/", json={
            "title": "hi\r\nBcc: everyone@example.com", "due_date": (now + timedelta(hours=1)).isoformat(),
            "remind_at": (now + timedelta(seconds=2)).isoformat()}), (201,))

    def recurrence_rules(self, api):
        hours = ",".join(map(str, range(24)))
        minutes = ",".join(map(str, range(60)))
        rules = [
            ("every second since 1900 (BYSECOND)", f"FREQ=DAILY;BYHOUR={hours};BYMINUTE={minutes};"
                                                   f"BYSECOND={minutes}", (400,)),
            ("every minute since 1900", f"FREQ=DAILY;BYHOUR={hours};BYMINUTE={minutes}", (201, 400)),
            ("BYSETPOS=100..199", "FREQ=MONTHLY;BYDAY=MO;BYSETPOS=" + ",".join(map(str, range(100, 200))), (400,)),
            ("never occurs (30 February)", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", (400,)),
            ("INTERVAL=1,000,000,000", "FREQ=DAILY;INTERVAL=1000000000", (201, 400)),
        ]
        for name, rule, statuses in rules:
            response = self.expect("REST", f"recurrence {name}", lambda rule=rule: api.post("/api/tasks/", json={
                "title": "rule", "recurrence_rule": rule, "due_date": "1900-01-01T00:00:00Z"}), statuses, within=1.0)
            if response is not None and response.status_code == 201:
                task_id = response.json()["id"]
                self.expect("REST", f"complete the task of {name}",
                            lambda task_id=task_id: api.post(f"/api/tasks/{task_id}/complete/"), (200,), within=1.0)

    def delete_race(self, api):
        task_id = api.post("/api/tasks/", json={"title": "raced"}).json()["id"]
        barrier = threading.Barrier(4)
        answers = []

        def delete():
            with self.client() as own:
                barrier.wait()
                answers.append(own.delete(f"/api/tasks/{task_id}/").status_code)

        threads = [threading.Thread(target=delete) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        counts = collections.Counter(answers)
        self.row("REST", "4 concurrent deletes of one task", "one 204, three 404",
                 ", ".join(f"{n} x {status}" for status, n in sorted(counts.items())), counts == {204: 1, 404: 3})

    def chat_and_mcp(self, api):
        self.expect("chat", "'add x in 99999999999 days'",
                    lambda: api.post("/api/chat/", json={"message": "add x in 99999999999 days"}), (200, 400))
        self.expect("chat", "message of 1,000,000 characters",
                    lambda: api.post("/api/chat/", json={"message": "add " + "x" * 1_000_000}), (400, 413))
        mcp_headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json, text/event-stream",
                       "Content-Type": "application/json"}
        with self.httpx.Client(base_url=self.base_url, timeout=30) as anonymous:
            self.expect("MCP", "no token", lambda: anonymous.post("/mcp/", content=b"{}", headers={
                "Accept": mcp_headers["Accept"], "Content-Type": "application/json"}), (401,))
            self.expect("MCP", "2 MiB JSON-RPC body", lambda: anonymous.post(
                "/mcp/", content=b'{"jsonrpc": "2.0", "x": "' + b"x" * (2 << 20) + b'"}', headers=mcp_headers), (413,))
            self.expect("MCP", "'[' x 5000 as JSON-RPC", lambda: anonymous.post("/mcp/", content=b"[" * 5000,
                                                                                 headers=mcp_headers), (400,))

    def sign_in(self):
        with self.client(token=False) as anonymous:
            statuses = []
            for attempt in range(40):
                response = anonymous.post("/api/auth/token/", json={"username": "alice", "password": f"guess-{attempt}"})
                statuses.append(response.status_code)
                if response.status_code == 429:
                    retry_after = response.headers.get("Retry-After")
                    break
            else:
                retry_after = None
            self.row("sign-in", "40 wrong passwords for alice at /api/auth/token/", "429 with Retry-After",
                     f"429 after {len(statuses) - 1} tries, Retry-After {retry_after}" if statuses[-1] == 429
                     else f"no 429 in {len(statuses)} tries", statuses[-1] == 429 and retry_after)
            statuses = []
            for attempt in range(40):
                response = anonymous.post("/api/auth/register/", json={"username": f"flood{attempt}-{uuid.uuid4().hex[:6]}",
                                                                       "password": PASSWORD})
                statuses.append(response.status_code)
                if response.status_code == 429:
                    break
            self.row("sign-in", "registration flood (40 sign-ups)", "429 with Retry-After",
                     f"429 after {len(statuses) - 1} sign-ups" if statuses[-1] == 429 else f"no 429 in {len(statuses)}",
                     statuses[-1] == 429 and response.headers.get("Retry-After"))
        with self.httpx.Client(base_url=self.base_url, timeout=30) as browser:
            page = browser.get("/login/")
            csrf = browser.cookies.get("csrftoken", "")
            statuses = []
            for attempt in range(40):
                response = browser.post("/login/", data={"username": "alice", "password": f"guess-{attempt}",
                                                         "csrfmiddlewaretoken": csrf},
                                        headers={"Referer": f"{self.base_url}/login/"})
                statuses.append(response.status_code)
                if response.status_code == 429:
                    break
            self.row("sign-in", "40 wrong passwords for alice at /login/", "429 with Retry-After",
                     f"429 after {len(statuses) - 1} tries" if statuses[-1] == 429
                     else f"no 429 in {len(statuses)} tries (login page {page.status_code})",
                     statuses[-1] == 429 and response.headers.get("Retry-After"))

    def dapr_and_websocket(self):
        alice = self.victims["alice"]
        forged = self.make_event("reminder.due", {
            "reminder_id": str(uuid.uuid4()), "task_id": alice.tasks[0], "title": "FORGED over /dapr/",
            "due_at": None, "remind_at": "2026-01-01T00:00:00Z", "user_id": alice.user_id,
        }, source="reminder-scheduler", correlation_id="drill")
        with self.client(token=False) as anonymous:
            self.expect("/dapr/", "anonymous forged reminder.due for alice on the web port",
                        lambda: anonymous.post("/dapr/events/notifications", json=forged), (404,))
        self.forged["dapr_reminder"] = forged["data"]["reminder_id"]
        import websockets

        async def handshake():
            try:
                async with websockets.connect(self.ws_url, origin="https://evil.example") as socket:
                    await asyncio.wait_for(socket.recv(), 5)
                    return "open"
            except websockets.ConnectionClosed as closed:
                return f"closed {closed.rcvd.code if closed.rcvd else '?'}"
            except websockets.InvalidStatus as refused:
                return f"refused {refused.response.status_code}"
            except TimeoutError:
                return "open (no close within 5 s)"

        answer = asyncio.run(handshake())
        self.row("WebSocket", "handshake from https://evil.example, no credentials", "closed 4401 or refused",
                 answer, answer.startswith(("closed 4401", "refused 403")))

    def produce(self, base_topic, value, key=None):
        """Produce one raw message; without a key it is junk, keyed with MARK and counted in ``raw_sent``
        (a forgery carries the task id it names as its key, as the relay would)."""
        if key is None:
            key = f"{MARK}-{uuid.uuid4().hex[:8]}"
            self.raw_sent[base_topic] += 1
        self.producer.produce(self.topic_name(base_topic), key=key, value=value)

    def kafka(self):
        junk = [
            ("'[' x 5000", b"[" * 5000),
            ("bytes that are not UTF-8", b"\xff\xfe{\x80}"),
            ("a tombstone (no value)", None),
            ("a JSON list", b"[1, 2, 3]"),
            ("900 KB of junk", b"x" * 900_000),
            ("an event with its data nested 10,000 deep", b'{"event_type": "task.created", "data": '
                                                          + b"[" * 10_000 + b"]" * 10_000 + b"}"),
        ]
        for name, value in junk:
            for topic in ("task-events", "reminders", "task-updates"):
                self.produce(topic, value)
            self.row("Kafka", f"raw {name} on every topic", "dead-lettered, consumers go on", "produced", True)
        alice, bob = self.victims["alice"], self.victims["bob"]
        reminder_id = str(uuid.uuid4())
        self.produce("reminders", json.dumps(self.make_event("reminder.due", {
            "reminder_id": reminder_id, "task_id": alice.tasks[0], "title": "FORGED reminder",
            "due_at": None, "remind_at": "2026-01-01T00:00:00Z", "user_id": alice.user_id,
        }, source="reminder-scheduler", correlation_id="drill")).encode(), key=alice.tasks[0])
        self.forged["kafka_reminder"] = reminder_id
        self.produce("reminders", json.dumps(self.make_event("reminder.scheduled", {
            "reminder_id": str(uuid.uuid4()), "task_id": alice.tasks[0], "title": "FORGED scheduled reminder",
            "due_at": "2026-01-01T01:00:00Z", "remind_at": "2026-01-01T00:00:00Z", "user_id": alice.user_id,
        }, source="todo-api", correlation_id="drill")).encode(), key=alice.tasks[0])
        recurring = alice.recurring[0]
        completed = {**recurring, "completed": True, "version": recurring["version"] + 1, "title": "FORGED next"}
        for owner_id in (alice.user_id, bob.user_id):
            event = self.make_event("task.completed", {**_task_data(completed), "user_id": owner_id},
                                    source="todo-api", correlation_id="drill")
            self.produce("task-events", json.dumps(event).encode(), key=recurring["id"])
        self.forged["completed_task"] = recurring["id"]
        sync = self.make_event("sync.task_changed", {
            "task_id": str(uuid.uuid4()), "change_type": "created", "user_id": alice.user_id,
            "task": {**recurring, "id": str(uuid.uuid4()), "title": "FORGED sync"},
        }, source="todo-api", correlation_id="drill")
        self.produce("task-updates", json.dumps(sync).encode(), key=sync["data"]["task_id"])
        self.forged["sync_event"] = sync["event_id"]
        self.producer.flush(30)
        for name in ("reminder.due for alice", "reminder.scheduled of alice's task with a made-up title",
                     "task.completed of alice's recurring task (as alice, as bob)", "sync.task_changed addressed to alice"):
            self.row("Kafka", f"forged {name}", "dead-lettered as ForgedEvent, no effect", "produced", True)

    def flood_once(self):
        """One round of the cheap, repeatable attacks: junk on the topics, guesses, a bad body."""
        for topic in ("task-events", "reminders", "task-updates"):
            self.produce(topic, b"[" * 5000)
        self.producer.poll(0)
        self.flooded["raw junk messages"] += 3
        with self.client(token=False) as anonymous:
            try:
                anonymous.post("/api/auth/token/", json={"username": "bob", "password": "guess"})
                anonymous.post("/api/tasks/", content=b"[" * 5000, headers={"Content-Type": "application/json"})
                self.flooded["sign-in guesses and malformed bodies"] += 2
            except self.httpx.HTTPError:
                self.flooded["requests without an answer"] += 1
        self.stop.wait(0.2)


def _brief(response):
    try:
        text = json.dumps(response.json())
    except ValueError:
        text = response.text
    return text[:60].replace("\n", " ")


def _task_data(task):
    fields = ("title", "description", "completed", "due_date", "remind_at", "priority", "recurrence_rule", "tags",
              "parent_task_id", "version", "user_id")
    return {"task_id": task["id"], **{name: task[name] for name in fields}}


# ---------------------------------------------------------------------------------------------- checks


def read_dead_letters(topic_name, prefixes=("task-events.dlq", "reminders.dlq", "task-updates.dlq")):
    """Every message of the dead-letter topics: (base topic, key, headers)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from events.transports.kafka.config import client_config

    consumer = Consumer(client_config(**{"group.id": f"drill-{uuid.uuid4().hex[:6]}", "enable.auto.commit": False}))
    metadata = consumer.list_topics(timeout=30)
    partitions = [TopicPartition(topic_name(base), p, OFFSET_BEGINNING)
                  for base in prefixes for p in metadata.topics[topic_name(base)].partitions]
    ends = {(tp.topic, tp.partition): consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in partitions}
    consumer.assign(partitions)
    letters, position = [], {}
    deadline = time.monotonic() + 60
    while any(position.get(key, -1) < high - 1 for key, high in ends.items() if high) and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None or message.error():
            continue
        position[(message.topic(), message.partition())] = message.offset()
        headers = {name: (value or b"").decode(errors="replace") for name, value in message.headers() or []}
        letters.append((message.topic(), (message.key() or b"").decode(errors="replace"), headers))
    consumer.close()
    return letters


def due_reminders(owners):
    """The legitimate users' reminders that came due on a task still open (completing a task cancels its reminder)."""
    from tasks.models import Task

    ids = [task_id for owner in owners for task_id in owner.reminders]
    return set(Task.objects.filter(id__in=ids, completed=False, remind_at__lte=datetime.now(timezone.utc))
               .values_list("id", flat=True))


def dead_letter_tally(attacker, topic_name):
    """(every dead letter, the attacker's raw messages dead-lettered per topic, what is still missing per topic)."""
    letters = read_dead_letters(topic_name)
    marked = collections.Counter(topic.rsplit(".", 1)[0].removeprefix(topic_name("")) for topic, key, _ in letters
                                 if key.startswith(MARK))
    # Each group reading a topic dead-letters each raw message once: task-events is read by audit and
    # recurrence, reminders by the scheduler and notifications, task-updates by the realtime bridge.
    expected = {"task-events": 2 * attacker.raw_sent["task-events"], "reminders": 2 * attacker.raw_sent["reminders"],
                "task-updates": attacker.raw_sent["task-updates"]}
    short = {topic: expected[topic] - marked[topic] for topic in expected if marked[topic] < expected[topic]}
    return letters, marked, short


def checks(owners, attacker, phases, processes, topic_name):
    from audit.models import AuditEntry
    from events.models import OutboxEvent
    from notifications.models import Notification, ScheduledReminder
    from tasks.models import Task

    rows = []
    legit_tasks = {task_id for owner in owners for task_id, _ in owner.sent}
    unsent = OutboxEvent.objects.filter(key__in=legit_tasks, sent_at__isnull=True).count()
    published = OutboxEvent.objects.filter(key__in=legit_tasks).count()
    rows.append(("legit events on Kafka", f"{published} outbox events of alice's and bob's tasks",
                 f"{unsent} not acknowledged by Kafka", unsent == 0))

    task_event_ids = set(OutboxEvent.objects.filter(key__in=legit_tasks, topic="task-events")
                         .values_list("event_id", flat=True))
    audited = collections.Counter(AuditEntry.objects.filter(event_id__in=task_event_ids).values_list("event_id", flat=True))
    rows.append(("legit audit trail", f"{len(task_event_ids)} task events",
                 f"{len(task_event_ids - audited.keys())} missing, {sum(1 for n in audited.values() if n > 1)} twice",
                 task_event_ids == audited.keys() and all(n == 1 for n in audited.values())))

    lost = {name: result["lost"] for name, result in phases.items()}
    rows.append(("legit changes on sockets", ", ".join(f"{r['changes']} {n}" for n, r in phases.items()),
                 ", ".join(f"{n} lost {c}" for n, c in lost.items()), not any(lost.values())))

    due = due_reminders(owners)
    notified = set(Notification.objects.filter(task_id__in=due).values_list("task_id", flat=True))
    rows.append(("legit reminders", f"{len(due)} reminders of alice and bob came due (tasks still open)",
                 f"{len(due - notified)} without an in-app notification", due <= notified))

    forged_reminders = [attacker.forged[k] for k in ("dapr_reminder", "kafka_reminder")]
    forged_notes = Notification.objects.filter(reminder_id__in=forged_reminders).count()
    forged_next = Task.objects.filter(parent_task_id=attacker.forged["completed_task"]).count()
    forged_sync = sum(attacker.forged["sync_event"] in owner.event_ids_seen for owner in owners)
    foreign = Task.objects.filter(user__username__in=[o.name for o in owners], title__startswith="FORGED").count()
    forged_scheduled = ScheduledReminder.objects.filter(title__startswith="FORGED").count()
    forged_audit = AuditEntry.objects.filter(title__startswith="FORGED").count()
    rows.append(("forgeries had no effect", "2 reminder.due, 1 reminder.scheduled, 2 task.completed, 1 sync.task_changed",
                 f"{forged_notes} notifications, {forged_scheduled} scheduled, {forged_next} next occurrences, "
                 f"{forged_audit} audit entries, {forged_sync} socket deliveries, {foreign} FORGED tasks",
                 forged_notes == forged_scheduled == forged_next == forged_audit == forged_sync == foreign == 0))

    letters, marked, short = dead_letter_tally(attacker, topic_name)
    forged_types = collections.Counter(headers.get("dlq.error.type") for _, key, headers in letters
                                       if not key.startswith(MARK) and headers.get("dlq.error.type") == "ForgedEvent")
    rows.append(("junk dead-lettered", ", ".join(f"{n} raw on {t}" for t, n in attacker.raw_sent.items()),
                 f"{sum(marked.values())} dead letters; short: {short or 'none'}", not short))
    rows.append(("forgeries dead-lettered", "recurrence (2), audit (2), scheduler (1), notifications (1), realtime (1)",
                 f"{sum(forged_types.values())} dead letters of type ForgedEvent", sum(forged_types.values()) >= 7))

    exited = {name: p.process.returncode for name, p in processes.items() if not p.alive()}
    rows.append(("no process went down", ", ".join(processes), f"exited: {exited or 'none'}", not exited))
    return rows


# ---------------------------------------------------------------------------------------------- the run


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30, help="length of each phase (baseline, attack)")
    parser.add_argument("--rate", type=float, default=10, help="legitimate changes per second, both users together")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="drill-"))
    os.chmod(workdir, 0o755)
    print(f"hostile drill in {workdir} (logs kept there)", flush=True)
    # No SMTP server: e-mail must not matter to anyone's in-app reminders.
    stack = PrivateStack(workdir, "drill", EMAIL_PORT=str(free_port()))
    env = stack.env
    stack.start()
    import httpx
    import websockets
    from confluent_kafka import Producer

    from events.transports.kafka.config import client_config
    from events.schemas import make_event
    from events.topics import topic_name

    logging.getLogger("httpx").setLevel(logging.WARNING)
    web_port = free_port()
    base_url, ws_url = f"http://127.0.0.1:{web_port}", f"ws://127.0.0.1:{web_port}/ws/sync/"
    processes = event_processes(workdir, env, web_port)
    for process in processes.values():
        process.start()

    try:
        wait_until(lambda: serves(base_url), 90, "web")
        accounts = {}
        for name in ("alice", "bob", "mallory"):
            answer = httpx.post(f"{base_url}/api/auth/register/", timeout=30, json={
                "username": name, "password": PASSWORD, "email": f"{name}@example.com"}).json()
            accounts[name] = (answer["token"], answer["user"]["id"])
        owners = [Owner(name, *accounts[name]) for name in ("alice", "bob")]
        rows, phases, attacker = asyncio.run(drive(args, owners, accounts, base_url, ws_url, websockets, httpx,
                                                  Producer(client_config()), topic_name, make_event))
        print("  settling…", flush=True)
        from events.models import OutboxEvent

        from notifications.models import Notification

        def settled():
            due = due_reminders(owners)
            return (not OutboxEvent.objects.filter(sent_at__isnull=True).exists()
                    and Notification.objects.filter(task_id__in=due).count() >= len(due))

        try:
            wait_until(settled, SETTLE_SECONDS, "settling", interval=0.25)
            # The consumers work through the attacker's backlog of junk: every raw message dead-lettered.
            deadline = time.monotonic() + SETTLE_SECONDS
            while dead_letter_tally(attacker, topic_name)[2] and time.monotonic() < deadline:
                time.sleep(2)
        except TimeoutError as error:
            print(f"  {error}; checking anyway", flush=True)
        time.sleep(5)  # stragglers (a duplicate, a late dead letter) land before the counts below
        outcome = checks(owners, attacker, phases, processes, topic_name)
    finally:
        for process in processes.values():
            process.stop()
        stack.stop()

    report(args, attacker, phases, outcome)
    if all(row[-1] for row in attacker.rows) and all(row[-1] for row in outcome):
        shutil.rmtree(workdir, ignore_errors=True)
        return 0
    print(f"logs kept in {workdir}")
    return 1


async def drive(args, owners, accounts, base_url, ws_url, websockets, httpx, producer, topic_name, make_event):
    rng = random.Random(7)
    clients = {owner.name: httpx.AsyncClient(base_url=base_url, timeout=30,
                                             headers={"Authorization": f"Token {owner.token}"}) for owner in owners}
    listeners = [asyncio.ensure_future(owner.listen(ws_url, websockets)) for owner in owners]
    await asyncio.gather(*(asyncio.wait_for(owner.connected.wait(), 30) for owner in owners))
    for owner in owners:  # what the attacker will aim at: a plain and a recurring task of each user
        for body in ({"title": f"{owner.name}'s first"},
                     {"title": f"{owner.name}'s weekly", "recurrence_rule": "FREQ=WEEKLY",
                      "due_date": (datetime.now(timezone.utc) + timedelta(days=2)).isoformat()}):
            task = (await clients[owner.name].post("/api/tasks/", json=body)).json()
            (owner.recurring.append(task) if "recurrence_rule" in body else owner.tasks.append(task["id"]))
    phases = {}
    # Warm-up, not measured: the processes' first requests (connections, caches) would otherwise make
    # the baseline's tail slower than the attack's, whichever phase came first.
    warm_up, _ = await legit_phase(owners, clients, args.rate, min(args.seconds, 5), rng)
    await asyncio.gather(*(owner.wait_seen({k for o, k in warm_up if o is owner}, 30) for owner in owners))
    print(f"  baseline: {args.rate:g} legitimate changes/s for {args.seconds:g} s", flush=True)
    baseline, failures = await legit_phase(owners, clients, args.rate, args.seconds, rng)
    await asyncio.gather(*(owner.wait_seen({k for o, k in baseline if o is owner}, 30) for owner in owners))
    phases["baseline"] = freshness(baseline) | {"failed": dict(failures)}

    attacker = Attacker(base_url, ws_url, accounts["mallory"][0], {o.name: o for o in owners}, producer, topic_name,
                        make_event)
    print(f"  attack: the same workload while mallory goes through every door", flush=True)
    attack_thread = threading.Thread(target=attacker.run, daemon=True)
    attack_thread.start()
    under_attack, failures = await legit_phase(owners, clients, args.rate, args.seconds, rng)
    attacker.stop.set()
    await asyncio.get_running_loop().run_in_executor(None, attack_thread.join, 300)
    producer.flush(30)
    await asyncio.gather(*(owner.wait_seen({k for o, k in under_attack if o is owner}, 30) for owner in owners))
    phases["under attack"] = freshness(under_attack) | {"failed": dict(failures)}
    for listener in listeners:
        listener.cancel()
    for client in clients.values():
        await client.aclose()
    return attacker.rows, phases, attacker


def report(args, attacker, phases, outcome):
    print()
    print(f"{'door':<10} {'attack':<58} {'contract':<24} {'answer':<46} result")
    for door, attack, expected, answer, ok in attacker.rows:
        print(f"{door:<10} {attack[:58]:<58} {expected[:24]:<24} {answer[:46]:<46} {'PASS' if ok else 'FAIL'}")
    print(f"kept up until the end of the phase: {dict(attacker.flooded)}")
    print()
    print(f"{'legitimate traffic':<14} {'changes':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'lost':>5}  failed")
    for name, result in phases.items():
        print(f"{name:<14} {result['changes']:>8} {result['p50_ms']:>8.1f} {result['p99_ms']:>8.1f} "
              f"{result['max_ms']:>8.1f} {result['lost']:>5}  {result['failed'] or 'none'}")
    base, attack = phases["baseline"], phases["under attack"]
    print(f"freshness under attack / baseline: p50 {attack['p50_ms'] / base['p50_ms']:.2f}, "
          f"p99 {attack['p99_ms'] / base['p99_ms']:.2f}  ({args.rate:g} changes/s, {args.seconds:g} s each)")
    print()
    print(f"{'check':<26} {'scope':<52} {'found':<60} result")
    for name, scope, found, ok in outcome:
        print(f"{name:<26} {scope[:52]:<52} {found[:60]:<60} {'PASS' if ok else 'FAIL'}")
    print(json.dumps({"attacks": [dict(zip(("door", "attack", "contract", "answer", "ok"), r)) for r in attacker.rows],
                      "phases": phases, "checks": [dict(zip(("check", "scope", "found", "ok"), r)) for r in outcome]}))


if __name__ == "__main__":
    sys.exit(main())

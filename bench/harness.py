"""The system under test for bench/run_all.py: private servers, a checkout's processes as `make run`
starts them, the load generator beside them, and every process's CPU and memory.

- ``Stack``: a private PostgreSQL cluster, Kafka broker (with the JVM flags `make infra` gives the
  shared one) and redis-server, so that every process of the system is a child of this harness
  and its CPU can be summed from /proc (bench/proc.py). Each checkout measured gets a database and
  topic, group, channel-layer, rate-limit and celery-queue namespaces of its own on them.
- ``Checkout``: a tree of the project's code (this one, or a baseline ``git worktree`` made in a
  temporary directory on the same virtualenv). Its processes are ITS `make run` list
  (scripts/supervise.py ``system_processes``: the Procfile's lines and one run_consumer per
  registered consumer), asked of that tree, started from that tree, each through ``/bin/sh -c
  "exec env <line>"`` as supervisord starts it; only the development mail catcher is left out.
- ``System``: some or all of one checkout's processes running; a mode is extra environment of its
  web process (OUTBOX_WRITER) and the names of the processes that run in it (the write path: web
  and relay only; the whole system: all of them). Changing modes restarts the web alone when its
  environment changes, and stops or starts the others as the mode's list says. Ready when the web
  serves and the checkout's processes and the servers have gone quiet (no start-up CPU in a
  measurement).
- ``LoadGenerator``: bench/load.py in a process of its own, driven over its stdin/stdout.
- ``settled``: the outbox has no row left to publish, every consumer group of the checkout has
  committed the end of every partition it is assigned, and no topic grew for a second: the work
  of the changes made is done (with no consumer running, the relay's publishing is that work).
"""

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection
from pathlib import Path

from proc import difference
from testing.kafka_broker import PrivateKafkaBroker
from testing.ports import free_port
from testing.postgres import PrivatePostgres
from testing.redis_server import PrivateRedis
from testing.waits import wait_for, wait_until

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VENV_BIN = Path(sys.executable).parent
LEFT_OUT = {"mail"}  # the development e-mail catcher: not part of the system, and it binds fixed ports
SETTLE_TIMEOUT = 90
START_TIMEOUT = 180
QUIET_WINDOW, QUIET_CORES = 1.0, 0.3


class MakeInfraBroker(PrivateKafkaBroker):
    """The private broker with the heap and collector of the shared one (scripts/infra.sh kafka_start),
    so that the Kafka CPU measured is that of the broker `make run` talks to."""

    def _java(self, main_class, *args):
        command = super()._java(main_class, *args)
        if main_class != "kafka.Kafka":
            return command
        flags = ["-Xms512m", "-Xmx512m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true"]
        return ["java", *flags, *[c for c in command[1:] if not c.startswith(("-Xm", "-XX:"))]]


def in_parallel(*calls):
    """Run the calls in threads (each mostly waits on a child process); their results, in order."""
    with ThreadPoolExecutor(len(calls)) as pool:
        return [future.result() for future in [pool.submit(call) for call in calls]]


class Stack:
    def __init__(self, meter):
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-"))
        os.chmod(self.workdir, 0o755)
        self.meter = meter
        self.postgres = self.broker = None
        self.redis = PrivateRedis(self.workdir / "redis")

    def start(self):
        """initdb, the broker's storage format and the starts of the three side by side."""

        def postgres():
            self.postgres = PrivatePostgres(self.workdir / "postgres", database="postgres")
            self.postgres.start()

        def broker():
            self.broker = MakeInfraBroker(self.workdir / "kafka")
            self.broker.start()

        in_parallel(postgres, broker, self.redis.start)
        self.meter.add(self.postgres.process.pid, "postgresql")
        self.meter.add(self.broker.process.pid, "kafka")
        self.meter.add(self.redis.process.pid, "redis")
        return self

    def stop(self):
        for server in (self.redis, self.broker, self.postgres):
            if server is not None:
                server.stop()

    def environment(self, label):
        """The environment of a checkout's processes: this stack, and namespaces named ``label``."""
        prefix = f"{label}-"
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "DATABASE_", "REDIS_", "CELERY_"))},
            "DEBUG": "true",
            "DJANGO_SETTINGS_MODULE": "todo_project.settings",
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:{self.postgres.port}/bench_{label}",
            "KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap_servers,
            "KAFKA_TOPIC_PREFIX": prefix, "KAFKA_GROUP_PREFIX": prefix,
            "REDIS_URL": self.redis.url, "CHANNEL_LAYER_PREFIX": prefix, "RATELIMIT_CACHE_PREFIX": f"{prefix}rl:",
            "CELERY_TASK_DEFAULT_QUEUE": f"{prefix}celery",
            "LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1",
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }


class Checkout:
    """A tree of the project's code under test, labelled ``label`` (``after``, ``before``)."""

    def __init__(self, path, label, stack, log_dir):
        self.path, self.label, self.stack = Path(path), label, stack
        self.env = stack.environment(label)
        self.log_dir = log_dir
        self.commit = subprocess.run(["git", "-C", str(self.path), "rev-parse", "--short", "HEAD"],
                                     capture_output=True, text=True).stdout.strip()
        self.dirty = bool(subprocess.run(["git", "-C", str(self.path), "status", "--porcelain", "--untracked-files=no"],
                                         capture_output=True, text=True).stdout.strip())

    @classmethod
    def worktree(cls, commit, stack, log_dir):
        """A detached ``git worktree`` of ``commit`` in a temporary directory, on this virtualenv."""
        path = Path(tempfile.mkdtemp(prefix="bench-baseline-")) / "tree"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(path), commit], check=True)
        for link in (".venv", ".cache"):
            if (REPO / link).exists():
                (path / link).symlink_to((REPO / link).resolve())
        checkout = cls(path, "before", stack, log_dir)
        checkout.made_worktree = True
        return checkout

    def remove(self):
        if getattr(self, "made_worktree", False):
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(self.path)], check=False)
            shutil.rmtree(self.path.parent, ignore_errors=True)

    def run(self, *args, **kwargs):
        return subprocess.run([sys.executable, *args], cwd=self.path, env=self.env, check=True, **kwargs)

    def prepare(self):
        """Its database (migrated by its own migrations) and topics on the stack."""
        subprocess.run([str(self.stack.postgres.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.stack.postgres.port),
                        "-U", "postgres", f"bench_{self.label}"], check=True)
        self.run("manage.py", "migrate", "--noinput", "-v", "0")
        self.run("manage.py", "create_topics", stdout=subprocess.DEVNULL)

    @functools.cached_property
    def processes(self):
        """``[(name, command)]`` of this tree's `make run`, asked of the tree itself."""
        out = self.run("-c", "import json; from scripts.supervise import system_processes; "
                       "print(json.dumps(system_processes()))", capture_output=True, text=True).stdout
        return [(name, command) for name, command in json.loads(out.strip().splitlines()[-1]) if name not in LEFT_OUT]

    def topic(self, base_name):
        return f"{self.env['KAFKA_TOPIC_PREFIX']}{base_name}"


def role(name):
    """The roles of a process of the Procfile and of the processes it forks."""
    return {"web": ("web arbiter", "web worker"), "worker": ("celery worker", "celery worker"),
            "beat": ("celery beat", "celery beat")}.get(name, (name, name))


class System:
    """A checkout's `make run` processes, each a root of the meter in the checkout's group. A mode is
    extra environment of the web process (OUTBOX_WRITER) and the processes that run in it (``names``,
    None for all of `make run`'s): ``use()`` restarts the web when its environment changes and stops
    or starts the others to match."""

    def __init__(self, checkout, meter):
        self.checkout, self.meter, self.label = checkout, meter, checkout.label
        self.port = free_port()
        self.env = {**checkout.env, "WEB_PORT": str(self.port)}
        self.log_dir = checkout.log_dir / checkout.label
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.processes, self.mode, self.web_env = {}, None, None

    def start(self, mode, extra_env, names=None):
        return self.use(mode, extra_env, names)

    def use(self, mode, extra_env, names=None):
        commands = dict(self.checkout.processes)
        wanted = set(commands) if names is None else set(names)
        if "web" not in wanted or not wanted <= commands.keys():
            raise ValueError(f"{self.label}: a mode runs the web and processes of {sorted(commands)}, not {sorted(wanted)}")
        web_env = {**self.env, **extra_env}
        self._stop([name for name in self.processes if name not in wanted or (name == "web" and web_env != self.web_env)])
        for name, command in self.checkout.processes:
            if name in wanted and name not in self.processes:
                self._spawn(name, command, web_env if name == "web" else self.env)
        self.mode, self.web_env = mode, web_env
        self._ready()
        return self

    def _spawn(self, name, command, env):
        with open(self.log_dir / f"{name}.log", "ab") as log:
            process = subprocess.Popen(["/bin/sh", "-c", f"exec env {command}"], cwd=self.checkout.path, env=env,
                                       stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.processes[name] = process
        self.meter.add(process.pid, *role(name), group=self.label)

    def _ready(self):
        """The web serves, nothing exited, and the system has gone quiet (no start-up CPU in a measurement)."""
        wait_until(lambda: self._serves() or any(p.poll() is not None for p in self.processes.values()), START_TIMEOUT,
                   f"the web server of {self.label}")
        exited = [name for name, p in self.processes.items() if p.poll() is not None]
        if exited:
            raise RuntimeError(f"{self.label} ({self.mode}): {exited} exited; logs in {self.log_dir}")
        if not wait_for(self._quiet, START_TIMEOUT, interval=0):
            print(f"  [{self.label}] {self.mode}: the system never went quiet after its start", flush=True)

    def _quiet(self):
        """Whether the checkout's processes and the servers used less than QUIET_CORES over QUIET_WINDOW s."""
        before = self.meter.cpu(self.label)
        time.sleep(QUIET_WINDOW)  # the window measured, not a wait for a condition
        return sum(difference(self.meter.cpu(self.label), before).values()) / QUIET_WINDOW < QUIET_CORES

    def _serves(self):
        try:
            connection = HTTPConnection("127.0.0.1", self.port, timeout=2)
            connection.request("GET", "/healthz")
            return connection.getresponse().status == 200
        except OSError:
            return False

    def register(self):
        """A new user's token (POST /api/auth/register/)."""
        connection = HTTPConnection("127.0.0.1", self.port, timeout=30)
        body = json.dumps({"username": f"bench-{uuid.uuid4().hex[:8]}", "password": "bench-passphrase-1"})
        connection.request("POST", "/api/auth/register/", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        payload = response.read()
        if response.status != 201:
            raise RuntimeError(f"register: {response.status} {payload[:300]!r}")
        return json.loads(payload)["token"]

    def _stop(self, names):
        stopping = {name: self.processes.pop(name) for name in names if name in self.processes}
        for process in stopping.values():
            if process.poll() is None:
                process.terminate()
        for process in stopping.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(30)
            self.meter.remove(process.pid)

    def stop(self):
        self._stop(list(self.processes))


class LoadGenerator:
    """bench/load.py in a process of its own against ``system``."""

    def __init__(self, system, token):
        checkout = system.checkout
        self.log = open(checkout.log_dir / f"load-{checkout.label}-{system.mode}.log", "ab")
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "load.py"), "--port", str(system.port), "--token", token,
             "--topic", checkout.topic("task-events"), "--bootstrap", checkout.stack.broker.bootstrap_servers],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            stderr=self.log,
        )

    def measure(self, on_ready, **command):
        """Send ``command``; call ``on_ready()`` once the load generator is warm, just before it measures."""
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        for expected in ("ready", "result"):
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"the load generator exited ({self.process.wait()}); see its log")
            message = json.loads(line)
            if expected == "ready":
                on_ready()
                self.process.stdin.write("go\n")
                self.process.stdin.flush()
        return message["result"]

    def close(self):
        self.process.stdin.close()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def consumer_lag(admin, consumer, prefix):
    """``(total lag of the groups named prefix*, {topic-partition: high watermark})``: the committed
    offset of every partition a member is assigned, against the partition's end."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

    groups = [g.group_id for g in admin.list_consumer_groups().result().valid if g.group_id.startswith(prefix)]
    lag, ends = 0, {}
    if not groups:
        return lag, ends
    for description in admin.describe_consumer_groups(groups).values():
        group = description.result()
        assigned = [tp for member in group.members for tp in member.assignment.topic_partitions]
        if not assigned:
            continue
        request = ConsumerGroupTopicPartitions(group.group_id, [TopicPartition(tp.topic, tp.partition) for tp in assigned])
        committed = admin.list_consumer_group_offsets([request])[group.group_id].result().topic_partitions
        for tp in committed:
            low, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=5)
            ends[(tp.topic, tp.partition)] = high
            lag += high - (tp.offset if tp.offset >= 0 else low)
    return lag, ends


# Rows the relay has still to publish (neither sent nor parked): the same table and columns in every
# checkout measured, the baseline's (25d134f) included.
UNPUBLISHED = "SELECT EXISTS (SELECT 1 FROM events_outboxevent WHERE sent_at IS NULL AND parked_at IS NULL)"


def settled(checkout, timeout=SETTLE_TIMEOUT):
    """Wait until the checkout's relay and consumers have done all the work of the changes made
    (module docstring); returns whether they did within ``timeout`` s."""
    import psycopg
    from confluent_kafka import Consumer
    from confluent_kafka.admin import AdminClient

    servers = checkout.stack.broker.bootstrap_servers
    admin = AdminClient({"bootstrap.servers": servers})
    consumer = Consumer({"bootstrap.servers": servers, "group.id": "bench-watermarks"})
    database = psycopg.connect(checkout.env["DATABASE_URL"], autocommit=True)
    previous = [None]

    def done():
        if database.execute(UNPUBLISHED).fetchone()[0]:
            return False
        lag, ends = consumer_lag(admin, consumer, checkout.env["KAFKA_GROUP_PREFIX"])
        quiet, previous[0] = lag == 0 and ends == previous[0], ends
        return quiet

    try:
        return bool(wait_for(done, timeout, interval=1.0))
    finally:
        database.close()
        consumer.close()

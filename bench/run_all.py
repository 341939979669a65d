"""Every benchmark in one run: `make bench`. Prints a table, writes bench/results.json and bench/results.png.

    python bench/run_all.py [--seconds 10] [--clients 8] [--rates 50 200 1000] [--events 3000] [--pending 100000]

On a scratch database and topic namespace (bench/scratch.py), with the shared infrastructure up:

1. write path: create-task requests/s and p50/p99 response time, with --clients keep-alive
   clients for --seconds, three ways in turn on the same machine: (a) events switched off
   (OUTBOX_WRITER=bench.outbox_writers.discard: the events are dropped), (b) ours: the outbox
   row in the request's transaction, published by relay_outbox, (c) the seed's way: a blocking
   produce + flush to Kafka inside the request (bench.outbox_writers.produce_and_flush). The
   baselines are selected from outside, by the OUTBOX_WRITER setting. Ratios against (a) and (b).
2. the system as `make run` starts it (web, relay, every registered consumer's process, celery
   worker and beat), then freshness: one client
   creates tasks at each --rates (open loop), and for each task the time from the HTTP 201 to
   (i) its task.created arriving at a Kafka consumer and (ii) its sync.task_changed arriving
   at a second WebSocket client of the same user; p50/p99 and the rate actually achieved.
3. consumers: bench/bench_consumers.py (audit, recurrence, realtime next to a bare
   confluent-kafka consume + json.loads loop on the same topic).
4. reminders: bench/bench_scheduler.py (lateness with --pending reminders pending and a burst).
5. memory: the peak RSS of every process started during the run, sampled every 0.5 s.
"""

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from scratch import REPO, scratch_environment, stop_all

sys.path.insert(0, str(REPO / "bench"))
from bench_write_path import Api, answers, throughput  # noqa: E402

from testing.ports import free_port  # noqa: E402
from testing.stats import percentile  # noqa: E402
from testing.system import event_commands, system_process  # noqa: E402
from testing.waits import wait_until  # noqa: E402

VENV_BIN = Path(sys.executable).parent
RESULTS_JSON = REPO / "bench" / "results.json"
RESULTS_PNG = REPO / "bench" / "results.png"


class PeakRss:
    """Samples every descendant process; keeps the peak RSS per role (web, relay, audit, …)."""

    def __init__(self):
        import psutil

        self.psutil = psutil
        self.me = psutil.Process()
        self.peaks = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def role(cmdline):
        text = " ".join(cmdline)
        if "uvicorn" in text:
            return "web"
        if "celery" in text:
            return "celery " + ("beat" if " beat" in text else "worker")
        if "kafka.Kafka" in text or "java" in text:
            return None
        for script in ("bench_consumers.py", "bench_scheduler.py"):
            if script in text:
                return f"{script} (in-process consumers)" if script == "bench_consumers.py" else None
        if "manage.py" in text:
            args = text.split("manage.py", 1)[1].split()
            if args and args[0] == "run_consumer":
                return args[1]
            if args and args[0] == "relay_outbox":
                return "relay"
            if args and args[0] == "run_scheduler":
                return "scheduler"
        return None

    def _run(self):
        while not self.stop.wait(0.5):
            for child in self.me.children(recursive=True):
                try:
                    role = self.role(child.cmdline())
                    if role:
                        rss = child.memory_info().rss
                        self.peaks[role] = max(self.peaks.get(role, 0), rss)
                except (self.psutil.NoSuchProcess, self.psutil.AccessDenied, self.psutil.ZombieProcess):
                    continue
        runner = self.me.memory_info().rss
        self.peaks["bench runner (clients)"] = max(self.peaks.get("bench runner (clients)", 0), runner)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def start(command, env, log_dir, name):
    log = open(log_dir / f"{name}.log", "ab")
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def uvicorn(app, port):
    return [str(VENV_BIN / "uvicorn"), app, "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
            "--timeout-keep-alive", "120"]


def write_path(env, args, log_dir):
    modes = [
        ("events off", "todo_project.asgi:application", {"OUTBOX_WRITER": "bench.outbox_writers.discard"}, False),
        ("outbox + relay (ours)", "todo_project.asgi:application", {}, True),
        ("sync produce+flush (seed)", "todo_project.asgi:application",
         {"OUTBOX_WRITER": "bench.outbox_writers.produce_and_flush"}, False),
    ]
    results = {}
    for label, app, extra, with_relay in modes:
        port = free_port()
        mode_env = {**env, **extra}
        processes = [start(uvicorn(app, port), mode_env, log_dir, f"write-{label.split()[0]}")]
        if with_relay:
            processes.append(start([sys.executable, "manage.py", "relay_outbox"], mode_env, log_dir, "write-relay"))
        try:
            wait_until(lambda: answers(port), 60, "the web server")
            token = Api(port).post("/api/auth/register/", {"username": f"w-{uuid.uuid4().hex[:8]}",
                                                           "password": "bench-passphrase-1"})["token"]
            throughput(port, token, 2, args.clients)  # warm-up: connections, pool, producer
            rate, latencies, errors = throughput(port, token, args.seconds, args.clients)
        finally:
            stop_all(processes)
        results[label] = {"requests_per_s": round(rate, 1), "p50_ms": round(percentile(latencies, .5) * 1000, 1),
                          "p99_ms": round(percentile(latencies, .99) * 1000, 1), "errors": len(errors)}
        print(f"  {label:<27} {rate:7.0f} req/s  p50 {results[label]['p50_ms']:6.1f} ms  "
              f"p99 {results[label]['p99_ms']:6.1f} ms  errors {len(errors)}", flush=True)
    return results


async def freshness(port, token, rates, seconds):
    import httpx
    import websockets
    from confluent_kafka import OFFSET_END, Consumer, TopicPartition

    from events.transports.kafka.config import client_config
    from events.topics import topic_name

    on_kafka, on_socket = {}, {}
    stop = threading.Event()
    consumer = Consumer(client_config(**{"group.id": f"bench-fresh-{uuid.uuid4().hex[:6]}", "enable.auto.commit": False}))
    name = topic_name("task-events")
    partitions = consumer.list_topics(name, timeout=10).topics[name].partitions
    consumer.assign([TopicPartition(name, p, OFFSET_END) for p in partitions])
    consumer.poll(1.0)

    def consume():
        while not stop.is_set():
            for message in consumer.consume(num_messages=500, timeout=0.1):
                if not message.error() and dict(message.headers() or []).get("event_type") == b"task.created":
                    on_kafka.setdefault(message.key().decode(), time.perf_counter())

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    connected = asyncio.Event()

    async def listen():
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws/sync/", max_queue=None,
                                      additional_headers={"Authorization": f"Token {token}"}) as socket:
            connected.set()
            async for raw in socket:
                now = time.perf_counter()
                message = json.loads(raw)
                if message.get("event_type") == "sync.task_changed":
                    on_socket.setdefault(message["data"]["task_id"], now)

    listening = asyncio.create_task(listen())
    await asyncio.wait_for(connected.wait(), 30)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    results = {}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Token {token}"},
                                 limits=limits, timeout=60) as client:
        gate = asyncio.Semaphore(256)

        async def create(answered, errors):
            async with gate:
                try:
                    response = await client.post("/api/tasks/", json={"title": "fresh", "tags": ["bench"]})
                except httpx.TransportError as exc:
                    errors.append(type(exc).__name__)
                    return
                if response.status_code != 201:
                    errors.append(response.status_code)
                    return
                answered[response.json()["id"]] = time.perf_counter()

        async def run(rate, count):
            answered, errors, pending = {}, [], []
            began = time.perf_counter()
            for index in range(count):
                delay = began + index / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                pending.append(asyncio.create_task(create(answered, errors)))
            await asyncio.gather(*pending)
            elapsed = time.perf_counter() - began
            deadline = time.perf_counter() + 30
            while time.perf_counter() < deadline and not all(t in on_kafka and t in on_socket for t in answered):
                await asyncio.sleep(0.1)
            return answered, errors, elapsed

        warm, _, _ = await run(10, 10)  # the bridge and the consumer join their partitions
        for rate in rates:
            answered, errors, elapsed = await run(rate, int(rate * seconds))
            row = {"target_per_s": rate, "achieved_per_s": round(len(answered) / elapsed, 1), "changes": len(answered),
                   "errors": len(errors)}
            for label, arrived in (("kafka", on_kafka), ("websocket", on_socket)):
                delays = [(arrived[t] - answered[t]) * 1000 for t in answered if t in arrived]
                row[f"{label}_missing"] = len(answered) - len(delays)
                row[f"{label}_p50_ms"] = round(statistics.median(delays), 1) if delays else None
                row[f"{label}_p99_ms"] = round(percentile(delays, .99), 1) if delays else None
            results[str(rate)] = row
            print(f"  {rate:>5g}/s target, {row['achieved_per_s']:6.1f}/s achieved: API->Kafka p50 {row['kafka_p50_ms']} "
                  f"p99 {row['kafka_p99_ms']} ms; API->WebSocket p50 {row['websocket_p50_ms']} p99 "
                  f"{row['websocket_p99_ms']} ms; missing {row['kafka_missing']}/{row['websocket_missing']}, "
                  f"errors {len(errors)}", flush=True)
    listening.cancel()
    stop.set()
    reader.join()
    consumer.close()
    return results


def system_and_freshness(env, args, log_dir):
    port = free_port()
    web_env = {**env, "DATABASE_POOL_MAX_SIZE": "10"}
    processes = [start(uvicorn("todo_project.asgi:application", port), web_env, log_dir, "web")]
    # The relay and every registered consumer's process, as `make run` starts them (testing.system).
    processes += [system_process(name, command, log_dir, env).start().process
                  for name, command in event_commands().items() if name != "web"]
    processes += [
        start([str(VENV_BIN / "celery"), "-A", "todo_project", "worker", "--loglevel=WARNING", "--concurrency=1",
               "--without-mingle", "--without-gossip"], env, log_dir, "worker"),
        start([str(VENV_BIN / "celery"), "-A", "todo_project", "beat", "--loglevel=WARNING",
               "--schedule", str(log_dir / "beat-schedule")], env, log_dir, "beat"),
    ]
    try:
        wait_until(lambda: answers(port), 60, "the web server")
        token = Api(port).post("/api/auth/register/", {"username": f"f-{uuid.uuid4().hex[:8]}",
                                                       "password": "bench-passphrase-1"})["token"]
        return asyncio.run(freshness(port, token, args.rates, args.fresh_seconds))
    finally:
        stop_all(processes)


def run_script(script, script_args, env, log_dir):
    completed = subprocess.run([sys.executable, str(REPO / "bench" / script), *script_args], cwd=REPO, env=env,
                               capture_output=True, text=True, timeout=600)
    (log_dir / f"{script}.log").write_text(completed.stdout + completed.stderr)
    if completed.returncode:
        raise RuntimeError(f"{script} failed:\n{completed.stderr[-2000:]}")
    return completed.stdout


def consumers(env, args, log_dir):
    out = run_script("bench_consumers.py", ["--events", str(args.events)], env, log_dir)
    results = json.loads(out.strip().splitlines()[-1])["consumers"]
    for name, row in results.items():
        print(f"  {name:<11} {row['consumer_per_s']:8,} events/s vs bare loop {row['bare_per_s']:9,}/s "
              f"(ratio {row['ratio']})", flush=True)
    return results


def reminders(env, args, log_dir):
    out = run_script("bench_scheduler.py", ["--pending", str(args.pending)], env, log_dir)
    results = {}
    for label, count, p50, p99, worst in re.findall(
        r"^\s+(\w+)\s+\(([\d,]+)\): lateness p50 (-?\d+) ms, p99 (-?\d+) ms, max (-?\d+) ms", out, re.M
    ):
        results[label] = {"reminders": int(count.replace(",", "")), "p50_ms": int(p50), "p99_ms": int(p99),
                          "max_ms": int(worst)}
        print(f"  {label:<6} {count:>7} reminders: lateness p50 {p50} ms, p99 {p99} ms, max {worst} ms", flush=True)
    if not results:
        raise RuntimeError(f"bench_scheduler.py printed no lateness lines:\n{out}")
    return {"pending": args.pending, "groups": results}


def machine():
    import psutil

    return {"cores": os.cpu_count(), "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "cpu": next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                        "unknown"),
            "python": sys.version.split()[0]}


def print_table(results):
    m = results["machine"]
    print(f"\n== make bench on {m['cores']} cores, {m['ram_gib']} GiB RAM ({m['cpu']}), Python {m['python']}")
    wp = results["write_path"]
    ours, off, seed = wp["outbox + relay (ours)"], wp["events off"], wp["sync produce+flush (seed)"]
    print(f"\nwrite path (create-task, {results['settings']['clients']} clients, {results['settings']['seconds']:g} s each)")
    print(f"{'mode':<28}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'vs off':>8}{'vs ours':>9}")
    for label, row in wp.items():
        print(f"{label:<28}{row['requests_per_s']:>8.0f}{row['p50_ms']:>9.1f}{row['p99_ms']:>9.1f}"
              f"{row['requests_per_s'] / off['requests_per_s']:>8.2f}{row['requests_per_s'] / ours['requests_per_s']:>9.2f}")
    print(f"ours / seed throughput: {ours['requests_per_s'] / seed['requests_per_s']:.2f}x; "
          f"seed p99 / ours p99: {seed['p99_ms'] / ours['p99_ms']:.2f}x")
    print("\nfreshness (HTTP 201 -> task.created on Kafka / -> sync message at a second WebSocket client)")
    print(f"{'target/s':>9}{'achieved/s':>11}{'Kafka p50':>10}{'p99':>8}{'WS p50':>9}{'p99':>8}{'missing':>9}{'errors':>7}")
    for row in results["freshness"].values():
        print(f"{row['target_per_s']:>9g}{row['achieved_per_s']:>11.1f}{row['kafka_p50_ms']!s:>10}{row['kafka_p99_ms']!s:>8}"
              f"{row['websocket_p50_ms']!s:>9}{row['websocket_p99_ms']!s:>8}"
              f"{row['kafka_missing'] + row['websocket_missing']:>9}{row['errors']:>7}")
    print("\nconsumers (events/s, from first message to last)")
    print(f"{'consumer':<12}{'events/s':>10}{'bare loop/s':>13}{'ratio':>8}")
    for name, row in results["consumers"].items():
        print(f"{name:<12}{row['consumer_per_s']:>10,}{row['bare_per_s']:>13,}{row['ratio']:>8.4f}")
    print(f"\nreminders (scheduler lateness, {results['reminders']['pending']:,} pending)")
    print(f"{'group':<8}{'count':>7}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}")
    for label, row in results["reminders"]["groups"].items():
        print(f"{label:<8}{row['reminders']:>7}{row['p50_ms']:>8}{row['p99_ms']:>8}{row['max_ms']:>8}")
    print("\npeak RSS during the run (MiB)")
    for role, mib in sorted(results["peak_rss_mib"].items()):
        print(f"  {role:<36}{mib:>8.1f}")


def chart(results):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    wp = results["write_path"]
    ax = axes[0][0]
    ax.bar(list(wp), [r["requests_per_s"] for r in wp.values()], color=["#999", "#2a7", "#c44"])
    ax.set_title("write path: create-task requests/s")
    ax.tick_params(axis="x", labelsize=8)
    ax = axes[0][1]
    rows = list(results["freshness"].values())
    x = range(len(rows))
    for offset, (key, label) in enumerate([("kafka_p50_ms", "Kafka p50"), ("kafka_p99_ms", "Kafka p99"),
                                           ("websocket_p50_ms", "WebSocket p50"), ("websocket_p99_ms", "WebSocket p99")]):
        ax.bar([i + offset * 0.2 for i in x], [r[key] or 0 for r in rows], width=0.2, label=label)
    ax.set_xticks([i + 0.3 for i in x], [f"{r['target_per_s']:g}/s ({r['achieved_per_s']:.0f})" for r in rows])
    ax.set_title("freshness after the HTTP response (ms); target (achieved)")
    ax.set_yscale("symlog", linthresh=10)  # negative: the push beat the HTTP response of a saturated API
    ax.axhline(0, color="black", linewidth=0.5)
    ax.legend(fontsize=8)
    ax = axes[1][0]
    names = list(results["consumers"])
    ax.bar([i - 0.2 for i in range(len(names))], [results["consumers"][n]["bare_per_s"] for n in names], width=0.4,
           label="bare consume + parse")
    ax.bar([i + 0.2 for i in range(len(names))], [results["consumers"][n]["consumer_per_s"] for n in names], width=0.4,
           label="run_consumer")
    ax.set_xticks(range(len(names)), names)
    ax.set_yscale("log")
    ax.set_title("consumers: events/s")
    ax.legend(fontsize=8)
    ax = axes[1][1]
    rss = results["peak_rss_mib"]
    ax.barh(list(rss), list(rss.values()))
    ax.set_title("peak RSS (MiB)")
    ax.tick_params(axis="y", labelsize=8)
    m = results["machine"]
    fig.suptitle(f"make bench — {m['cores']} cores, {m['ram_gib']} GiB RAM")
    fig.tight_layout()
    fig.savefig(RESULTS_PNG, dpi=90)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10, help="write path: seconds per mode")
    parser.add_argument("--clients", type=int, default=8, help="write path: concurrent clients")
    parser.add_argument("--rates", type=float, nargs="+", default=[50, 200, 1000], help="freshness: changes/s")
    parser.add_argument("--fresh-seconds", type=float, default=6, help="freshness: seconds per rate")
    parser.add_argument("--events", type=int, default=3000, help="consumers: events per consumer")
    parser.add_argument("--pending", type=int, default=100_000, help="reminders: pending reminders")
    args = parser.parse_args()

    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
    run_id = uuid.uuid4().hex[:8]
    log_dir = Path(f"/tmp/bench-{run_id}")
    log_dir.mkdir()
    results = {"machine": machine(), "settings": vars(args)}
    began = time.monotonic()
    with scratch_environment("bench", CHANNEL_LAYER_PREFIX=f"bench-{run_id}-", PYTHONUNBUFFERED="1") as env, \
            PeakRss() as rss:
        print(f"== write path (logs in {log_dir})", flush=True)
        results["write_path"] = write_path(env, args, log_dir)
        print("== the system as `make run` starts it; freshness", flush=True)
        results["freshness"] = system_and_freshness(env, args, log_dir)
        print("== consumers", flush=True)
        results["consumers"] = consumers(env, args, log_dir)
        print(f"== reminders ({args.pending:,} pending)", flush=True)
        results["reminders"] = reminders(env, args, log_dir)
    results["peak_rss_mib"] = {role: round(peak / 2**20, 1) for role, peak in sorted(rss.peaks.items())}
    results["elapsed_s"] = round(time.monotonic() - began)
    print_table(results)
    RESULTS_JSON.write_text(json.dumps(results, indent=2) + "\n")
    chart(results)
    print(f"\nwrote {RESULTS_JSON.relative_to(REPO)} and {RESULTS_PNG.relative_to(REPO)} in {results['elapsed_s']} s")


if __name__ == "__main__":
    main()

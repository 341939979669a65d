"""An outside probe of running web servers: keep-alive clients hammer one API call, A/B interleaved.

    python bench/probe_web.py http://127.0.0.1:8000 [http://127.0.0.1:8001 ...]
        [--clients 8] [--seconds 10] [--rounds 3] [--op create|list|update] [--json FILE]

It is a process of its own (run it with `nice` beside the servers or not, as you measure), and it
talks to servers that are already running, started as `make run` starts the web process. Each
server gets fresh users (``--users``, POST /api/auth/register/, so the server must allow that many
registrations per probe run). Then, round after round, every server in turn gets ``--clients`` keep-alive clients
sending the operation as fast as they can for ``--seconds``: the servers take turns, so that a
neighbour's load on a shared machine falls on each about equally, and the ratio of two servers'
figures means more than either figure alone.

Per server and round it prints requests/s, p50/p99 latency, the CPU time the server's processes
spent per request (every process holding the listening socket, read from /proc, so a gunicorn
arbiter and its workers all count), the probe's own CPU time per request, and the servers'
resident memory per process. The last line gives each server's median throughput as a ratio of
the first server's.
"""

import argparse
import json
import os
import resource
import statistics
import sys
import threading
import time
import uuid
from http.client import HTTPConnection
from pathlib import Path
from urllib.parse import urlsplit

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Api:
    def __init__(self, url, token=None):
        parts = urlsplit(url)
        self.connection = HTTPConnection(parts.hostname, parts.port, timeout=30)
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = f"Token {token}"

    def call(self, method, path, body=None):
        self.connection.request(method, path, None if body is None else json.dumps(body), self.headers)
        response = self.connection.getresponse()
        payload = response.read()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: {response.status} {payload[:200]!r}")
        return json.loads(payload) if payload else None


def listening_inodes(port):
    """Inodes of the sockets listening on ``port`` (any address), from /proc/net/tcp{,6}."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # 0A: LISTEN
                inodes.add(fields[9])
    return inodes


def server_pids(port):
    """Every process holding the listening socket of ``port``: the server and, forked, its workers."""
    wanted = {f"socket:[{inode}]" for inode in listening_inodes(port)}
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in wanted for fd in (entry / "fd").iterdir()):
                pids.append(int(entry.name))
        except OSError:
            continue
    return sorted(pids)


def cpu_seconds(pids):
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime
    return total


def rss_mib(pid):
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE / 2**20
    except OSError:
        return 0.0


def own_cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def register(url):
    name = f"probe-{uuid.uuid4().hex[:12]}"
    return Api(url).call("POST", "/api/auth/register/", {"username": name, "password": f"{name}-Secret-1"})["token"]


class Server:
    def __init__(self, url, clients, users):
        self.url = url.rstrip("/")
        self.port = urlsplit(self.url).port
        user_tokens = [register(self.url) for _ in range(users)]
        # Client i acts as user i mod users (one user: every client writes the same account).
        self.tokens = [user_tokens[i % users] for i in range(clients)]
        # update: each client PATCHes a task of its own (no row-lock queue between the clients).
        self.task_ids = [
            Api(self.url, token).call("POST", "/api/tasks/", {"title": f"probe {i}", "priority": 2})["id"]
            for i, token in enumerate(self.tokens)
        ]
        self.pids = server_pids(self.port)
        if not self.pids:
            raise SystemExit(f"no process listens on port {self.port}")


def request_of(op, server, index, count):
    if op == "create":
        return "POST", "/api/tasks/", {"title": f"probe {index}", "priority": 2, "tags": ["probe"]}
    if op == "list":
        return "GET", "/api/tasks/?page_size=20", None
    return "PATCH", f"/api/tasks/{server.task_ids[index]}/", {"title": f"probe {index} #{count}"}


def hammer(server, op, clients, seconds):
    counts, latencies, errors = [0] * clients, [[] for _ in range(clients)], []
    start = threading.Barrier(clients + 1)

    def client(index):
        api = Api(server.url, server.tokens[index])
        start.wait()
        while time.monotonic() < deadline:
            method, path, body = request_of(op, server, index, counts[index])
            began = time.monotonic()
            try:
                api.call(method, path, body)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors.append(str(exc)[:200])
                api = Api(server.url, server.tokens[index])
                continue
            latencies[index].append(time.monotonic() - began)
            counts[index] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + seconds
    server_cpu, probe_cpu, began = cpu_seconds(server.pids), own_cpu_seconds(), time.monotonic()
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    server_cpu, probe_cpu = cpu_seconds(server.pids) - server_cpu, own_cpu_seconds() - probe_cpu
    done = sum(counts)
    every = [latency for per_client in latencies for latency in per_client]
    return {
        "requests_per_s": round(done / elapsed, 1),
        "p50_ms": round(percentile(every, 0.50) * 1000, 1) if every else None,
        "p99_ms": round(percentile(every, 0.99) * 1000, 1) if every else None,
        "server_cpu_ms_per_request": round(server_cpu * 1000 / done, 2) if done else None,
        "probe_cpu_ms_per_request": round(probe_cpu * 1000 / done, 2) if done else None,
        "requests": done,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("urls", nargs="+")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--users", type=int, default=1, help="accounts the clients write to (default 1, as make bench)")
    parser.add_argument("--op", choices=("create", "list", "update"), default="create")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of unmeasured load per server first")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    servers = [Server(url, args.clients, args.users) for url in args.urls]
    for server in servers:
        hammer(server, args.op, args.clients, args.warmup)
    rows = {server.url: [] for server in servers}
    for round_number in range(1, args.rounds + 1):
        for server in servers:
            row = hammer(server, args.op, args.clients, args.seconds)
            rows[server.url].append(row)
            print(f"round {round_number} {server.url} {args.op}: {row['requests_per_s']}/s p50 {row['p50_ms']} ms "
                  f"p99 {row['p99_ms']} ms; server CPU {row['server_cpu_ms_per_request']} ms/request, probe CPU "
                  f"{row['probe_cpu_ms_per_request']} ms/request; errors {row['errors']} {row['first_error'] or ''}",
                  flush=True)
    baseline = statistics.median(row["requests_per_s"] for row in rows[servers[0].url])
    summary = {}
    for server in servers:
        median = statistics.median(row["requests_per_s"] for row in rows[server.url])
        memory = {pid: round(rss_mib(pid), 1) for pid in server_pids(server.port)}
        summary[server.url] = {"median_requests_per_s": median, "ratio": round(median / baseline, 2),
                               "rss_mib": memory, "rounds": rows[server.url]}
        print(f"{server.url}: median {median}/s = {median / baseline:.2f} x the first; "
              f"RSS MiB per process {sorted(memory.values(), reverse=True)}")
    if args.json:
        args.json.write_text(json.dumps({"op": args.op, "clients": args.clients, "seconds": args.seconds,
                                         "servers": summary}, indent=2))
    return 0 if all(row["errors"] == 0 for per in rows.values() for row in per) else 1


if __name__ == "__main__":
    sys.exit(main())

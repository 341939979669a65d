"""The write path, and the whole system with its freshness: the "system" section of bench/run_all.py,
which this runs alone (with its table, results.json and results.png):

    python bench/bench_write_path.py [--seconds 10] [--clients 8] [--rates 50 200 1000] [--rounds 1] [--baseline 25d134f]

Every checkout measured (with --baseline: the baseline's and this one) has its processes started on
the private stack (bench/harness.py), side by side (the one not measured idles) and its users
registered; first --warmup seconds of load on each checkout's, not recorded (a new broker's JIT and
a cold web worker would otherwise be paid by whichever checkout comes first). Then each checkout in turn (the
baseline's just before this one's), bench/load.py, a process of its own, sends the load, the whole
system's (2) first, so that its consumers never start on a backlog the write path left them:

1. write path, issue #14's definition: ``--clients`` keep-alive clients create tasks back to back
   for ``--seconds`` (after 2 s of warm-up) with ONLY the processes of the write path running, in
   three modes selected from outside by the web process's OUTBOX_WRITER setting: ours (the outbox
   row in the request's transaction, published by the relay: web + relay), events off
   (bench.outbox_writers.discard: web + relay, which has nothing to publish), and the seed's
   blocking produce + flush inside the request (bench.outbox_writers.produce_and_flush: web
   alone, it publishes itself). No consumer runs, so the ratios between the modes compare the
   cost of publishing a change and nothing else: with consumers running, events off would also
   spare every consumer its work and the ratio would measure the consumers. All the clients are
   one user, as in the issue; each mode is then measured again with one user per client
   (``write_path_users``): a user's changes commit one at a time (the sync log's per-user lock,
   tasks/sync.py), so with one user the figure is that lock's turnover, not what the web can do;
2. the whole system, as `make run` starts it (every process; ours): the same closed-loop load,
   for the whole system's CPU per change (consumers' work included) next to its throughput, then
   freshness: creates at each of ``--rates`` per second (open loop) for ``--fresh-seconds``; per
   create, send -> task.created at a Kafka consumer and send -> the change at a second WebSocket
   client of the user, and the same from the task's created_at (bench/load.py).

Next to each figure: the CPU time per committed change of every process running (web arbiter and
workers, relay, and in the whole system each consumer, scheduler, connect, celery worker and beat;
Kafka, PostgreSQL and its backends, Redis; bench/proc.py) from the moment the load starts until
the work it caused is done (harness.settled: the relay published every row and every consumer
group committed the end of its partitions), divided by the changes committed (201 answers); the
web workers' share of it; and the load generator's CPU per change, which is not the system's.
The system's idle CPU (cores used while nobody sends anything, 3 s before the load) is printed
beside it.
"""

import sys
import time

from figures import median_run, per_change_ms
from harness import LoadGenerator, System, in_parallel, settled
from proc import difference

# A write-path mode: the web process's extra environment and the processes running.
WRITE_PATH = ("web", "relay")
MODES = {
    "outbox + relay": ({}, WRITE_PATH),
    "events off": ({"OUTBOX_WRITER": "bench.outbox_writers.discard"}, WRITE_PATH),
    "sync produce+flush (seed)": ({"OUTBOX_WRITER": "bench.outbox_writers.produce_and_flush"}, ("web",)),
}
WHOLE_SYSTEM = "outbox + relay"
IDLE_SECONDS = 3


def measured(system, run):
    """``run(on_ready)`` (a LoadGenerator.measure) with the system's CPU from on_ready until settled."""
    before = {}
    meter = system.meter

    def on_ready():
        before["cpu"], before["at"] = meter.cpu(system.label), time.monotonic()

    row = run(on_ready)
    row["settled"] = settled(system.checkout)
    spent = difference(meter.cpu(system.label), before["cpu"])
    row["interval_s"] = round(time.monotonic() - before["at"], 1)
    row["system_cpu_s"] = round(sum(spent.values()), 2)
    row["cpu_by_role_s"] = dict(sorted(spent.items(), key=lambda item: -item[1]))
    row["processes"] = [name for name, _ in system.checkout.processes if name in system.processes]  # in `make run` order
    row["system_cpu_per_change_ms"] = per_change_ms(row["system_cpu_s"], row["changes"])
    row["web_cpu_per_change_ms"] = per_change_ms(spent.get("web worker", 0) + spent.get("web arbiter", 0), row["changes"])
    row["load_cpu_per_change_ms"] = per_change_ms(row["load_cpu_s"], row["changes"])
    return row


def idle_cores(system):
    before = system.meter.cpu(system.label)
    time.sleep(IDLE_SECONDS)  # a fixed measuring window, not a wait for a condition
    return round(sum(difference(system.meter.cpu(system.label), before).values()) / IDLE_SECONDS, 3)


def say(system, text):
    print(f"  [{system.label}] {text}", flush=True)


def keep(results, label, section, key, row, figure):
    """Store ``row`` under results[label][section][key]; with several rounds, the median run's."""
    rows = results.setdefault("_runs", {}).setdefault((label, section, key), [])
    rows.append(row)
    results[label].setdefault(section, {})[key] = median_run(rows, figure)


def throughput(system, load, section, mode, args, results, tokens=None):
    idle = idle_cores(system)
    row = measured(system, lambda on_ready: load.measure(
        on_ready, op="throughput", clients=args.clients, seconds=args.seconds, **({"tokens": tokens} if tokens else {})))
    row["idle_cores"] = idle
    keep(results, system.label, section, mode, row, "requests_per_s")
    running = " + ".join(row["processes"]) if len(row["processes"]) < 4 else "all processes"
    say(system, f"{section} [{mode}] ({row['users']} user(s), {running}): "
        f"{row['requests_per_s']:7.1f} creates/s  p50 {row['p50_ms']} ms  p99 {row['p99_ms']} ms  system CPU "
        f"{row['system_cpu_per_change_ms']} ms/change, web {row['web_cpu_per_change_ms']} (idle {idle} cores)  load CPU "
        f"{row['load_cpu_per_change_ms']} ms/change  errors {row['errors'] or 0}{'' if row['settled'] else '  NOT SETTLED'}")


def freshness(system, load, args, results):
    for rate in args.rates:
        row = measured(system, lambda on_ready: load.measure(
            on_ready, op="freshness", rate=rate, seconds=args.fresh_seconds))
        keep(results, system.label, "freshness", f"{rate:g}", row, "achieved_per_s")
        k, w = row["kafka"], row["websocket"]
        say(system, f"{rate:>5g}/s target {row['achieved_per_s']:7.1f}/s achieved: from send "
            f"Kafka p50/p99 {k['from_sent']['p50_ms']}/{k['from_sent']['p99_ms']} ms, WebSocket "
            f"{w['from_sent']['p50_ms']}/{w['from_sent']['p99_ms']} ms; from commit WebSocket "
            f"{w['from_commit']['p50_ms']}/{w['from_commit']['p99_ms']} ms; missing "
            f"{k['missing']}/{w['missing']}, not sent {row['not_sent']}, errors {row['errors'] or 0}; "
            f"system CPU {row['system_cpu_per_change_ms']} ms/change{'' if row['settled'] else '  NOT SETTLED'}")


def measuring(system, token, *runs):
    """Each of ``runs`` called with one load generator of ``system``'s."""
    load = LoadGenerator(system, token)
    try:
        for run in runs:
            run(load)
    finally:
        load.close()


def system_section(checkouts, meter, args, results):
    """Every checkout's whole system started (side by side; the one not measured idles) and warmed
    up; each checkout's whole system measured in turn (throughput, freshness) while nothing is left
    to consume; then each stopped to its write path (web + relay) and ``args.rounds`` times, mode
    by mode, each checkout in turn: the baseline's measurement just before this tree's (with several
    rounds each figure is that of the median run, ``keep``)."""
    systems = [System(checkout, meter) for checkout in checkouts]
    whole_env = MODES[WHOLE_SYSTEM][0]
    try:
        in_parallel(*(lambda system=system: system.start(f"whole system, {WHOLE_SYSTEM}", whole_env) for system in systems))
        # The first user's token is the one user's of the write path and of the freshness's WebSocket.
        tokens = {system.label: [system.register() for _ in range(args.clients)] for system in systems}
        for system in systems if args.warmup else ():
            # Every checkout's: the first measured is the whole system's, and a cold web worker's
            # first requests (lazy imports, first queries) would be charged to whichever came first.
            say(system, f"warming the servers up: {args.warmup:g} s of load (not recorded)")
            measuring(system, tokens[system.label][0], lambda load: load.measure(
                lambda: None, op="throughput", clients=args.clients, seconds=args.warmup))
            settled(system.checkout)  # the warm-up's work done before anything is measured
        for system in systems:
            measuring(system, tokens[system.label][0],
                      lambda load: throughput(system, load, "whole_system", WHOLE_SYSTEM, args, results),
                      lambda load: freshness(system, load, args, results))
        for round_number in range(args.rounds):
            # Every other round backwards: a round begins in the mode the last one ended in (one restart less).
            for mode in list(MODES)[::-1 if round_number % 2 else 1]:
                for system in systems:
                    system.use(mode, *MODES[mode])
                    measuring(system, tokens[system.label][0],
                              lambda load: throughput(system, load, "write_path", mode, args, results),
                              lambda load: throughput(system, load, "write_path_users", mode, args, results,
                                                      tokens[system.label]))
    finally:
        in_parallel(*(system.stop for system in systems))
        results.pop("_runs", None)


if __name__ == "__main__":
    from run_all import main

    sys.exit(main(sections=["system"]))

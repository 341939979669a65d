"""The write path and freshness, on the whole system as `make run` starts it: the "system" section of
bench/run_all.py, which this runs alone (with its table, results.json and results.png):

    python bench/bench_write_path.py [--seconds 10] [--clients 8] [--rates 50 200 1000] [--rounds 1] [--baseline 25d134f]

Every checkout measured (with --baseline: the baseline's and this one) has its processes started on
the private stack (bench/harness.py), side by side (the one not measured idles) and a user
registered; first --warmup seconds of load on this checkout's, not recorded (a new broker's JIT
would otherwise be paid by whichever checkout comes first). Then, for each mode in turn, each
checkout (the baseline's just before this one's), bench/load.py, a process of its own, sends the load:

1. write path: ``--clients`` keep-alive clients create tasks back to back for ``--seconds`` (after
   2 s of warm-up), in three modes selected from outside by the web process's OUTBOX_WRITER
   setting (the web alone is restarted between modes): ours (the outbox row in the request's
   transaction, published by the relay), events off (bench.outbox_writers.discard), and the seed's
   blocking produce + flush inside the request (bench.outbox_writers.produce_and_flush);
2. freshness, in our mode: creates at each of ``--rates`` per second (open loop) for
   ``--fresh-seconds``; per create, send -> task.created at a Kafka consumer and send -> the change at
   a second WebSocket client of the user, and the same from the task's created_at (bench/load.py).

Next to each figure: the whole system's CPU time per committed change, the CPU of every process
of the system (web arbiter and workers, relay, each consumer, scheduler, connect, celery worker
and beat, Kafka, PostgreSQL and its backends, Redis; bench/proc.py) from the moment the load
starts until the system has settled (every consumer group committed the end of its partitions:
the work the changes caused is included), divided by the changes committed (201 answers); and
the load generator's CPU per change, which is not the system's. The system's idle CPU (cores
used while nobody sends anything, 3 s before the load) is printed beside it.
"""

import sys
import time

from figures import median_run, per_change_ms
from harness import LoadGenerator, System, in_parallel, settled
from proc import difference

# The first mode is the one the processes start in, the warm-up's and the freshness's: ours.
MODES = {
    "outbox + relay": {},
    "events off": {"OUTBOX_WRITER": "bench.outbox_writers.discard"},
    "sync produce+flush (seed)": {"OUTBOX_WRITER": "bench.outbox_writers.produce_and_flush"},
}
FRESHNESS_MODE = "outbox + relay"
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
    row["system_cpu_per_change_ms"] = per_change_ms(row["system_cpu_s"], row["changes"])
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


def throughput_and_freshness(system, token, mode, args, results):
    load = LoadGenerator(system, token)
    try:
        idle = idle_cores(system)
        row = measured(system, lambda on_ready: load.measure(
            on_ready, op="throughput", clients=args.clients, seconds=args.seconds))
        row["idle_cores"] = idle
        keep(results, system.label, "write_path", mode, row, "requests_per_s")
        say(system, f"{mode:<26} {row['requests_per_s']:7.1f} creates/s  p50 {row['p50_ms']} ms  "
            f"p99 {row['p99_ms']} ms  system CPU {row['system_cpu_per_change_ms']} ms/change "
            f"(idle {idle} cores)  load CPU {row['load_cpu_per_change_ms']} ms/change  "
            f"errors {row['errors'] or 0}{'' if row['settled'] else '  NOT SETTLED'}")
        if mode != FRESHNESS_MODE:
            return
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
    finally:
        load.close()


def system_section(checkouts, meter, args, results):
    """Every checkout's system started (side by side; the one not measured idles), warmed up, then
    ``args.rounds`` times, mode by mode, each checkout in turn: the baseline's measurement just before
    this tree's; with several rounds each figure is that of the median run (``keep``)."""
    systems = [System(checkout, meter) for checkout in checkouts]
    first_mode = next(iter(MODES))
    try:
        in_parallel(*(lambda system=system: system.start(first_mode, MODES[first_mode]) for system in systems))
        tokens = {system.label: system.register() for system in systems}
        if args.warmup:
            say(systems[-1], f"warming the servers up: {args.warmup:g} s of load (not recorded)")
            load = LoadGenerator(systems[-1], tokens[systems[-1].label])
            try:
                load.measure(lambda: None, op="throughput", clients=args.clients, seconds=args.warmup)
            finally:
                load.close()
        for round_number in range(args.rounds):
            # Every other round backwards: a round begins in the mode the last one ended in (one restart less).
            for mode in list(MODES)[::-1 if round_number % 2 else 1]:
                for system in systems:
                    system.use(mode, MODES[mode])
                    throughput_and_freshness(system, tokens[system.label], mode, args, results)
    finally:
        in_parallel(*(system.stop for system in systems))
        results.pop("_runs", None)


if __name__ == "__main__":
    from run_all import main

    sys.exit(main(sections=["system"]))

"""Every benchmark in one run: `make bench` (`make bench BASELINE=<commit>` for before/after in one run).
Prints one table, writes bench/results.json and bench/results.png.

    python bench/run_all.py [--baseline COMMIT | --baseline-tree PATH] [--sections system consumers reminders relay]
        [--growth]
        [--seconds 10] [--clients 8] [--rates 50 200 1000] [--fresh-seconds 6] [--rounds 1] [--warmup 8]
        [--events 20000] [--pending 1000000] [--relay-rows 50000]

Everything runs on a PRIVATE PostgreSQL, Kafka broker and Redis started for the run (bench/harness.py),
so that every process of the system is a child of this one and its CPU can be summed from /proc
(bench/proc.py); the shared servers of other work are not touched.

Sections:
- system (bench/bench_write_path.py): create-task throughput with --clients keep-alive clients on
  the write path alone (web + relay, no consumer) in three modes (outbox + relay / events off /
  the seed's synchronous produce+flush, web alone), then on the checkout's whole `make run` system,
  freshness at each of --rates there, and the CPU time per committed change of the processes
  running next to each, the load generator (bench/load.py, a process of its own) apart;
- consumers: the checkout's bench/bench_consumers.py (each consumer next to a bare consume loop);
- reminders: the checkout's bench/bench_scheduler.py (lateness with --pending reminders pending);
- relay: the checkout's bench/bench_relay.py (a --relay-rows backlog drained, next to a bare produce);
- growth (only with --growth: long): the checkout's bench/bench_growth.py at the issue's sizes;
  a checkout without one of these scripts (an older baseline) has no figures there;
- memory: the peak RSS of every process of the system by role (web arbiter, web worker, relay, …),
  sampled every 0.5 s during the system section.

--baseline COMMIT makes a `git worktree` of COMMIT in a temporary directory (on this virtualenv)
and measures it too, section by section, each of the baseline's runs just before this tree's, with
the baseline's own processes, migrations and benchmark scripts; the table then gives each figure
for both and after/before. --baseline-tree PATH uses an existing checkout instead.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_write_path import system_section  # noqa: E402
from figures import comparison, flatten, table  # noqa: E402
from harness import REPO, Checkout, Stack, in_parallel  # noqa: E402
from proc import Meter  # noqa: E402

# The private broker's readiness probe reads the project's Kafka client settings (development ones).
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "todo_project.settings")
os.environ.setdefault("DEBUG", "true")

RESULTS_JSON = REPO / "bench" / "results.json"
RESULTS_PNG = REPO / "bench" / "results.png"
SECTIONS = ("system", "consumers", "reminders", "relay", "growth")
DEFAULT_SECTIONS = ("system", "consumers", "reminders", "relay")  # growth is long: --growth
SCRIPT_TIMEOUT = 900


def has_script(checkout, script):
    if (checkout.path / "bench" / script).exists():
        return True
    print(f"  [{checkout.label}] has no bench/{script}: no figures", flush=True)
    return False


def run_script(checkout, script, script_args):
    """One of the checkout's own benchmark scripts, on its database and the private stack."""
    command = ["-c", *script_args] if script == "-c" else [str(checkout.path / "bench" / script), *script_args]
    completed = subprocess.run([sys.executable, *command], cwd=checkout.path,
                               env=checkout.env, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT)
    (checkout.log_dir / f"{checkout.label}-{script.strip('-')}.log").write_text(completed.stdout + completed.stderr)
    if completed.returncode:
        raise RuntimeError(f"[{checkout.label}] {script} failed:\n{completed.stderr[-2000:]}")
    return completed.stdout


def consumers(checkout, args):
    out = run_script(checkout, "bench_consumers.py", ["--events", str(args.events)])
    results = json.loads(out.strip().splitlines()[-1])["consumers"]
    for name, row in results.items():
        print(f"  [{checkout.label}] {name:<11} {row['consumer_per_s']:8,} events/s vs bare loop "
              f"{row['bare_per_s']:9,}/s (ratio {row['ratio']})", flush=True)
    return results


LATENESS_LINE = re.compile(r"^\s+(\w+)\s+\(([\d,]+)\): lateness p50 (-?\d+) ms, p99 (-?\d+) ms, max (-?\d+) ms", re.M)


def reminders(checkout, args):
    out = run_script(checkout, "bench_scheduler.py", ["--pending", str(args.pending)])
    groups = {label: {"reminders": int(count.replace(",", "")), "p50_ms": int(p50), "p99_ms": int(p99), "max_ms": int(worst)}
              for label, count, p50, p99, worst in LATENESS_LINE.findall(out)}
    if not groups:
        raise RuntimeError(f"[{checkout.label}] bench_scheduler.py printed no lateness lines:\n{out}")
    for label, row in groups.items():
        print(f"  [{checkout.label}] {label:<6} {row['reminders']:>7,} reminders: lateness p50 {row['p50_ms']} ms, "
              f"p99 {row['p99_ms']} ms, max {row['max_ms']} ms", flush=True)
    return {"pending": args.pending, "groups": groups}


def relay(checkout, args):
    if not has_script(checkout, "bench_relay.py"):
        return None
    out = run_script(checkout, "bench_relay.py", ["--rows", str(args.relay_rows), "--repeat", "3"])
    result = json.loads(out.strip().splitlines()[-1])
    print(f"  [{checkout.label}] relay drains {result['relay']['events_per_s']:,.0f} events/s, a bare idempotent produce "
          f"{result['bare']['events_per_s']:,.0f}/s (relay/bare {result['relay_vs_bare']:.2f})", flush=True)
    return result


GROWTH = ("import json, sys; sys.path.insert(0, 'bench'); from bench_growth import main; "
          "print(json.dumps(main(sys.argv[1:]), default=str))")


def growth(checkout, args):
    """The checkout's bench/bench_growth.py at the issue's sizes; its figures as it returns them."""
    if not has_script(checkout, "bench_growth.py"):
        return None
    out = run_script(checkout, "-c", [GROWTH, "--pending", "1000000", "--tasks", "1000000", "--user-tasks", "10000",
                                     "--users", "100", "--sockets-per-user", "10"])
    print("\n".join(f"  [{checkout.label}] {line}" for line in out.strip().splitlines()[:-1]), flush=True)
    return json.loads(out.strip().splitlines()[-1])


def machine():
    import psutil

    return {"cores": os.cpu_count(), "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "cpu": next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                        "unknown"),
            "python": sys.version.split()[0], "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def print_table(results):
    m = results["machine"]
    labels = [c["label"] for c in results["checkouts"]]
    described = ", ".join(f"{c['label']} = {c['commit']}{' + uncommitted changes' if c['dirty'] else ''}"
                          for c in results["checkouts"])
    print(f"\n== make bench on {m['cores']} cores, {m['ram_gib']} GiB RAM ({m['cpu']}), Python {m['python']}, "
          f"load average at start {m['load_average_at_start']}; {described}; {results['elapsed_s']} s")
    flat = {label: flatten(results[label]) for label in labels}
    if "before" in flat:
        print(table(comparison(flat["after"], flat["before"]), ["figure", "after", "before", "after/before"]))
    else:
        print(table([(name, value) for name, value in flat["after"].items()], ["figure", "value"]))
    print("(Write path: only the web and the relay run (the seed's mode: the web alone), as in issue #14; whole system: "
          "every process of `make run`. CPU ms/change: the CPU time of every process running, and the servers', from the "
          "start of the load until the work it caused was done, per committed change; the load generator's apart. "
          "Freshness (whole system) from send: from the moment the request was "
          "written; from commit: from the task's created_at, set inside the request's transaction just before its commit.)")


def chart(results):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [c["label"] for c in results["checkouts"]][::-1]  # before first, when there is one
    width = 0.8 / len(labels)
    fig, axes = plt.subplots(2, 2, figsize=(14, 9))

    def bars(ax, title, series, log=False):
        """``series``: {label: {x name: value}}: one bar per x name and label."""
        names = list(dict.fromkeys(n for s in series.values() for n in s))
        for offset, label in enumerate(labels):
            values = [series.get(label, {}).get(n) or 0 for n in names]
            ax.bar([i + offset * width for i in range(len(names))], values, width=width, label=label)
        ax.set_xticks([i + width * (len(labels) - 1) / 2 for i in range(len(names))], names, fontsize=7, rotation=15)
        ax.set_title(title, fontsize=10)
        if log:
            ax.set_yscale("log")
        ax.legend(fontsize=8)

    wp = {label: results[label].get("write_path", {}) for label in labels}
    whole = {label: results[label].get("whole_system", {}) for label in labels}
    bars(axes[0][0], "create-task, 8 keep-alive clients: creates/s (write path: web + relay only)",
         {label: {**{m: r["requests_per_s"] for m, r in rows.items()},
                  **{f"whole system: {m}": r["requests_per_s"] for m, r in whole[label].items()}}
          for label, rows in wp.items()})
    bars(axes[0][1], "CPU ms per committed change, every process running",
         {label: {**{f"write: {m}": r["system_cpu_per_change_ms"] for m, r in rows.items()},
                  **{f"whole: {m}": r["system_cpu_per_change_ms"] for m, r in whole[label].items()},
                  **{f"fresh {rate}/s": r["system_cpu_per_change_ms"]
                     for rate, r in results[label].get("freshness", {}).items()}} for label, rows in wp.items()})
    bars(axes[1][0], "freshness from send, p99 ms (log), by target rate: API->Kafka, API->2nd WebSocket",
         {label: {**{f"Kafka {rate}/s": r["kafka"]["from_sent"]["p99_ms"]
                     for rate, r in results[label].get("freshness", {}).items()},
                  **{f"WS {rate}/s": r["websocket"]["from_sent"]["p99_ms"]
                     for rate, r in results[label].get("freshness", {}).items()}} for label in labels}, log=True)
    bars(axes[1][1], "peak RSS per process, by role (MiB)", {label: results[label].get("peak_rss_mib", {}) for label in labels})
    m = results["machine"]
    fig.suptitle(f"make bench — {m['cores']} cores, {m['ram_gib']} GiB RAM; "
                 + ", ".join(f"{c['label']} {c['commit']}" for c in results["checkouts"]))
    fig.tight_layout()
    fig.savefig(RESULTS_PNG, dpi=90)
    plt.close(fig)


def parse_args(argv, sections):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    baseline = parser.add_mutually_exclusive_group()
    baseline.add_argument("--baseline", metavar="COMMIT", help="also measure this commit (a temporary git worktree)")
    baseline.add_argument("--baseline-tree", metavar="PATH", type=Path, help="also measure this checkout")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(sections or DEFAULT_SECTIONS))
    parser.add_argument("--growth", action="store_true", help="add the growth section (issue's sizes; long)")
    parser.add_argument("--seconds", type=float, default=10, help="write path: measured seconds per mode")
    parser.add_argument("--clients", type=int, default=8, help="write path: keep-alive clients")
    parser.add_argument("--warmup", type=float, default=8, help="system: seconds of unrecorded load first")
    parser.add_argument("--rounds", type=int, default=1,
                        help="system: measure every mode this many times, interleaved; print the median run")
    parser.add_argument("--rates", type=float, nargs="+", default=[50, 200, 1000], help="freshness: creates/s")
    parser.add_argument("--fresh-seconds", type=float, default=6, help="freshness: seconds per rate")
    parser.add_argument("--events", type=int, default=20000,
                        help="consumers: events per consumer (about a second of the fastest one, not a fraction)")
    parser.add_argument("--pending", type=int, default=1_000_000, help="reminders: pending reminders (the issue's size)")
    parser.add_argument("--relay-rows", type=int, default=50_000, help="relay: outbox rows of the backlog")
    args = parser.parse_args(argv)
    if args.growth and "growth" not in args.sections:
        args.sections.append("growth")
    return args


def main(argv=None, sections=None):
    args = parse_args(argv, sections)
    began = time.monotonic()
    results = {"machine": machine(), "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    with Meter() as meter:
        stack = Stack(meter)
        log_dir = stack.workdir / "logs"
        log_dir.mkdir()
        print(f"== private PostgreSQL, Kafka and Redis in {stack.workdir} (logs in {log_dir})", flush=True)
        checkouts = []
        try:
            stack.start()
            if args.baseline:
                checkouts.append(Checkout.worktree(args.baseline, stack, log_dir))
            elif args.baseline_tree:
                checkouts.append(Checkout(args.baseline_tree, "before", stack, log_dir))
            checkouts.append(Checkout(REPO, "after", stack, log_dir))
            results["checkouts"] = [{"label": c.label, "commit": c.commit, "dirty": c.dirty, "path": str(c.path)}
                                    for c in checkouts]
            for checkout in checkouts:
                print(f"== {checkout.label}: {checkout.path} at {checkout.commit}: migrating …", flush=True)
                results[checkout.label] = {}
            in_parallel(*(checkout.prepare for checkout in checkouts))
            if "system" in args.sections:
                print(f"== [{time.monotonic() - began:.0f} s] the system as `make run` starts it: write path, freshness, "
                      "CPU per change", flush=True)
                system_section(checkouts, meter, args, results)
                for checkout in checkouts:  # its processes', and the servers' (the same for every checkout)
                    peaks = {**meter.peaks.get(checkout.label, {}), **meter.peaks.get("", {})}
                    results[checkout.label]["peak_rss_mib"] = {
                        role: round(peak / 2**20, 1) for role, peak in sorted(peaks.items())}
            for name, section in (("consumers", consumers), ("reminders", reminders), ("relay", relay),
                                  ("growth", growth)):
                if name in args.sections:
                    print(f"== [{time.monotonic() - began:.0f} s] {name}", flush=True)
                    for checkout in checkouts:
                        figures = section(checkout, args)
                        if figures is not None:
                            results[checkout.label][name] = figures
        finally:
            for checkout in checkouts:
                checkout.remove()
            stack.stop()
    results["elapsed_s"] = round(time.monotonic() - began)
    print_table(results)
    RESULTS_JSON.write_text(json.dumps(results, indent=2) + "\n")
    chart(results)
    print(f"\nwrote {RESULTS_JSON.relative_to(REPO)} and {RESULTS_PNG.relative_to(REPO)} in {results['elapsed_s']} s")
    shutil.rmtree(stack.workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

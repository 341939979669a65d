"""The figures of one `make bench` run as one flat table: ``{figure: value}`` per checkout measured,
and the after/before ratio of each figure both have. Pure functions of bench/run_all.py's results."""

import math


def per_change_ms(cpu_seconds, changes):
    """CPU milliseconds per committed change; None when nothing was committed (no figure, not 0 or inf)."""
    return round(cpu_seconds * 1000 / changes, 2) if changes else None


def median_run(rows, figure):
    """The row of the run with the median ``figure`` (the lower middle one of an even count): a whole
    run's row, so that its figures belong together; ``runs`` lists every run's ``figure``."""
    ordered = sorted(rows, key=lambda row: row[figure])
    return {**ordered[(len(ordered) - 1) // 2], "runs": [row[figure] for row in rows]}


def flatten(results):
    """``{figure: value}`` of one checkout's results (run_all's ``results[label]``), in table order."""
    flat = {}
    for section, users in (("write_path", "one user"), ("write_path_users", "one user per client")):
        write_path = results.get(section, {})
        for mode, row in write_path.items():
            _throughput(flat, f"write path, {running(row)}, {users} [{mode}]", row)
        modes = {mode: row["requests_per_s"] for mode, row in write_path.items()}
        if {"outbox + relay", "events off"} <= modes.keys() and modes["events off"]:
            flat[f"write path (no consumer running), {users}: outbox / events off"] = round(
                modes["outbox + relay"] / modes["events off"], 3)
        if {"outbox + relay", "sync produce+flush (seed)"} <= modes.keys() and modes["sync produce+flush (seed)"]:
            flat[f"write path (no consumer running), {users}: outbox / seed's produce+flush"] = round(
                modes["outbox + relay"] / modes["sync produce+flush (seed)"], 3)
    for mode, row in results.get("whole_system", {}).items():
        _throughput(flat, f"whole system, {running(row)} [{mode}]", row)
    for rate, row in results.get("freshness", {}).items():
        name = f"freshness, all `make run` processes [{rate}/s]"
        flat[f"{name}: achieved/s"] = row["achieved_per_s"]
        for target, label in (("kafka", "API->Kafka"), ("websocket", "API->2nd WebSocket")):
            for origin in ("from_sent", "from_commit"):
                for quantile in ("p50_ms", "p99_ms"):
                    flat[f"{name}: {label} {quantile[:3]} ms {origin.replace('_', ' ')}"] = row[target][origin][quantile]
            flat[f"{name}: {label} missing"] = row[target]["missing"]
        flat[f"{name}: system CPU ms/change"] = row["system_cpu_per_change_ms"]
    for name, row in results.get("consumers", {}).items():
        flat[f"consumer [{name}]: events/s"] = row["consumer_per_s"]
        flat[f"consumer [{name}]: / bare consume loop"] = row["ratio"]
        if "consumer_cpu_us_per_event" in row:  # a bench_consumers.py that measures CPU too
            flat[f"consumer [{name}]: CPU µs/event"] = row["consumer_cpu_us_per_event"]
    for group, row in results.get("reminders", {}).get("groups", {}).items():
        flat[f"reminders [{group}]: lateness p99 ms"] = row["p99_ms"]
    relay = results.get("relay")
    if relay:
        flat["relay drain: events/s"] = relay["relay"]["events_per_s"]
        flat["relay drain: / bare idempotent produce"] = round(relay["relay_vs_bare"], 3)
    flat.update(leaves("growth", results.get("growth") or {}))
    for role, mib in results.get("peak_rss_mib", {}).items():
        flat[f"peak RSS [{role}] MiB"] = mib
    return flat


def running(row):
    """The processes a measurement ran, as its label says them: a few by name, or all of `make run`'s."""
    processes = row.get("processes")
    if not processes:  # a row of a run that did not record them
        return "processes not recorded"
    return f"{' + '.join(processes)} only" if set(processes) <= {"web", "relay"} else "all `make run` processes"


def _throughput(flat, name, row):
    flat[f"{name}: creates/s"] = row["requests_per_s"]
    flat[f"{name}: response p50 ms"] = row["p50_ms"]
    flat[f"{name}: response p99 ms"] = row["p99_ms"]
    flat[f"{name}: system CPU ms/change"] = row["system_cpu_per_change_ms"]
    flat[f"{name}: web CPU ms/change"] = row.get("web_cpu_per_change_ms")
    flat[f"{name}: load generator CPU ms/change"] = row["load_cpu_per_change_ms"]


def leaves(name, tree):
    """``{"name: a b c": number}`` of every number in a nested dict; a list's rows are named by their
    "query" or "name" field, else by their index."""
    if isinstance(tree, bool):
        return {}
    if isinstance(tree, (int, float)):
        return {name: tree}
    if isinstance(tree, list):
        items = [(row.get("query", row.get("name", index)) if isinstance(row, dict) else index, row)
                 for index, row in enumerate(tree)]
    else:
        items = tree.items() if isinstance(tree, dict) else ()
    flat = {}
    for key, value in items:
        flat.update(leaves(f"{name}{':' if ':' not in name else ''} {key}", value))
    return flat


def ratio(after, before):
    """after / before, or None when either is missing or before is 0 (no figure rather than a wrong one)."""
    if after is None or before is None or before == 0 or any(isinstance(v, float) and math.isnan(v) for v in (after, before)):
        return None
    return round(after / before, 3)


def comparison(after, before):
    """``[(figure, after, before, after/before)]`` over the figures of ``after`` (flat tables), in its
    order, then those only ``before`` has; a figure one side lacks is None there."""
    names = list(after) + [name for name in before if name not in after]
    return [(name, after.get(name), before.get(name), ratio(after.get(name), before.get(name))) for name in names]


def cell(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return f"{value:,}"


def table(rows, headers):
    """Rows of cells as aligned text: the first column left, the others right."""
    text_rows = [headers] + [[str(row[0])] + [cell(v) for v in row[1:]] for row in rows]
    widths = [max(len(r[i]) for r in text_rows) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)) for r in text_rows
    )

"""CPU time and memory of process trees, read from /proc: what the whole system costs over an interval.

/proc/<pid>/stat holds a process's own CPU time (utime + stime, every thread) and the CPU time of
the children it has reaped (cutime + cstime, recursively: a reaped child's own reaped children
included). So the CPU a tree of processes has spent so far is the sum of all four over its LIVE
members: a member that exited and was reaped by another member is in its reaper's cutime/cstime.
The difference of two such sums is what the tree spent in between, exactly, however many
processes came and went meanwhile (PostgreSQL backends, a recycled gunicorn worker, celery's
pool). What escapes: a process reaped by init (an orphan) and children of a parent that ignores
SIGCHLD; none of the system's processes does either. Resolution: one clock tick (10 ms) per process.

``Meter`` holds the roots (pid -> role) and, from a thread, samples every member's RSS for the
peak per role; ``cpu_by_role()`` is one reading, ``difference()`` of two is an interval's cost.
"""

import os
import threading
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
PROC = Path("/proc")


@dataclass(frozen=True)
class ProcStat:
    pid: int
    ppid: int
    comm: str
    own_ticks: int  # utime + stime
    reaped_ticks: int  # cutime + cstime
    rss_bytes: int


def parse_stat(text):
    """One /proc/<pid>/stat line. The command name (field 2) is in parentheses and may itself hold
    spaces and parentheses, so the fields after it are counted from its LAST ')'."""
    head, tail = text.rsplit(")", 1)
    pid, comm = head.split("(", 1)
    fields = tail.split()  # fields[0] is field 3 (state): field n is fields[n - 3]
    return ProcStat(
        pid=int(pid), ppid=int(fields[1]), comm=comm,
        own_ticks=int(fields[11]) + int(fields[12]), reaped_ticks=int(fields[13]) + int(fields[14]),
        rss_bytes=int(fields[21]) * PAGE_SIZE,
    )


def read_table(proc=PROC):
    """``{pid: ProcStat}`` of every process readable now (one that exits while read is skipped)."""
    table = {}
    for entry in os.scandir(proc):
        if entry.name.isdigit():
            try:
                table[int(entry.name)] = parse_stat((Path(entry.path) / "stat").read_text())
            except (FileNotFoundError, ProcessLookupError, ValueError):
                continue
    return table


@dataclass(frozen=True)
class Root:
    """A process we started and the role of it and of its descendants (``descendants`` defaults to
    ``role``: gunicorn's arbiter is ``web arbiter``, the workers it forks ``web worker``)."""

    role: str
    descendants: str = ""
    group: str = ""  # whose process it is (a checkout's label); "" for the servers every group shares


def roles_of(table, roots):
    """``{pid: role}`` of every live member of the trees of ``roots`` (``{pid: Root}``) in ``table``."""
    children = defaultdict(list)
    for stat in table.values():
        children[stat.ppid].append(stat.pid)
    roles = {}
    for pid, root in roots.items():
        if pid not in table:
            continue
        roles[pid] = root.role
        pending = list(children[pid])
        while pending:
            child = pending.pop()
            roles[child] = root.descendants or root.role
            pending.extend(children[child])
    return roles


def cpu_by_role(table, roots):
    """``{role: CPU seconds spent so far}``: own and reaped CPU of every live member (module docstring)."""
    seconds = defaultdict(float)
    for pid, role in roles_of(table, roots).items():
        stat = table[pid]
        seconds[role] += (stat.own_ticks + stat.reaped_ticks) / CLOCK_TICKS
    return dict(seconds)


def difference(after, before):
    """``{role: seconds}`` spent between two ``cpu_by_role`` readings; a role absent before started at 0."""
    return {role: round(after[role] - before.get(role, 0.0), 2) for role in after}


def peak_rss_by_role(table, roots, peaks):
    """Raise ``peaks`` (``{role: bytes}``) to the largest RSS of any one process of each role now."""
    for pid, role in roles_of(table, roots).items():
        peaks[role] = max(peaks.get(role, 0), table[pid].rss_bytes)
    return peaks


class Meter:
    """The processes of a run by group and role: CPU readings on demand, and the peak RSS per group
    and role sampled every ``interval`` s (``peaks[group][role]``)."""

    def __init__(self, interval=0.5):
        self.roots, self.peaks = {}, {}
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.interval = interval
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def add(self, pid, role, descendants="", group=""):
        with self.lock:
            self.roots[pid] = Root(role, descendants, group)

    def remove(self, pid):
        with self.lock:
            self.roots.pop(pid, None)

    def cpu(self, group):
        """``{role: CPU seconds so far}`` of ``group``'s processes and the shared servers."""
        table = read_table()
        with self.lock:
            return cpu_by_role(table, {pid: root for pid, root in self.roots.items() if root.group in ("", group)})

    def _sample(self):
        while not self.stopped.wait(self.interval):
            table = read_table()
            with self.lock:
                for group in {root.group for root in self.roots.values()}:
                    roots = {pid: root for pid, root in self.roots.items() if root.group == group}
                    peak_rss_by_role(table, roots, self.peaks.setdefault(group, {}))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.thread.join()

"""`make bench` sums the CPU of every process of the system from /proc (bench/proc.py): the sums are
exact over an interval however many processes come and go, and each process has its role."""

import subprocess
import sys

import pytest

from bench.proc import CLOCK_TICKS, PAGE_SIZE, Meter, Root, cpu_by_role, difference, parse_stat, peak_rss_by_role, roles_of
from testing.waits import wait_for


def stat_line(pid, comm, ppid, utime, stime, cutime, cstime, rss_pages=0):
    """A /proc/<pid>/stat line with the fields bench/proc.py reads; the others 0."""
    fields = ["S", ppid] + [0] * 9 + [utime, stime, cutime, cstime] + [0] * 6 + [rss_pages] + [0] * 20
    return f"{pid} ({comm}) " + " ".join(str(f) for f in fields)


def table(*stats):
    return {stat.pid: stat for stat in stats}


def test_a_stat_line_is_read_after_the_last_parenthesis_of_the_command_name():
    stat = parse_stat(stat_line(42, "odd) (name", 7, 100, 50, 30, 20, rss_pages=10))
    assert (stat.pid, stat.comm, stat.ppid) == (42, "odd) (name", 7)
    assert (stat.own_ticks, stat.reaped_ticks, stat.rss_bytes) == (150, 50, 10 * PAGE_SIZE)


def test_every_descendant_of_a_root_has_the_role_its_root_gives_descendants():
    processes = table(
        parse_stat(stat_line(10, "gunicorn", 1, 0, 0, 0, 0)),
        parse_stat(stat_line(11, "gunicorn", 10, 0, 0, 0, 0)),
        parse_stat(stat_line(12, "gunicorn", 10, 0, 0, 0, 0)),
        parse_stat(stat_line(13, "thread-child", 12, 0, 0, 0, 0)),
        parse_stat(stat_line(20, "postgres", 1, 0, 0, 0, 0)),
        parse_stat(stat_line(21, "postgres", 20, 0, 0, 0, 0)),
        parse_stat(stat_line(30, "someone else", 1, 0, 0, 0, 0)),
    )
    roles = roles_of(processes, {10: Root("web arbiter", "web worker"), 20: Root("postgresql"), 99: Root("gone")})
    assert roles == {10: "web arbiter", 11: "web worker", 12: "web worker", 13: "web worker",
                     20: "postgresql", 21: "postgresql"}


def test_the_cpu_of_a_child_that_exited_during_the_interval_is_counted_once_through_its_reaper():
    roots = {20: Root("postgresql")}
    before = table(parse_stat(stat_line(20, "postgres", 1, 100, 0, 0, 0)),
                   parse_stat(stat_line(21, "postgres", 20, 40, 10, 0, 0)))
    # The backend used 30 more ticks, exited and was reaped (its 80 ticks now in the parent's
    # cutime/cstime); a new backend was born and used 5; the parent used 2.
    after = table(parse_stat(stat_line(20, "postgres", 1, 102, 0, 70, 10)),
                  parse_stat(stat_line(22, "postgres", 20, 5, 0, 0, 0)))
    spent = difference(cpu_by_role(after, roots), cpu_by_role(before, roots))
    assert spent == {"postgresql": round((2 + 30 + 5) / CLOCK_TICKS, 2)}


def test_the_peak_rss_of_a_role_is_that_of_its_largest_process_at_any_sample():
    roots = {10: Root("web arbiter", "web worker")}
    peaks = {}
    peak_rss_by_role(table(parse_stat(stat_line(10, "g", 1, 0, 0, 0, 0, 5)),
                           parse_stat(stat_line(11, "g", 10, 0, 0, 0, 0, 100)),
                           parse_stat(stat_line(12, "g", 10, 0, 0, 0, 0, 300))), roots, peaks)
    peak_rss_by_role(table(parse_stat(stat_line(10, "g", 1, 0, 0, 0, 0, 5)),
                           parse_stat(stat_line(11, "g", 10, 0, 0, 0, 0, 200))), roots, peaks)
    assert peaks == {"web arbiter": 5 * PAGE_SIZE, "web worker": 300 * PAGE_SIZE}


@pytest.mark.e2e  # it starts processes
def test_a_meter_reads_the_cpu_a_real_child_spent_after_it_exited_and_was_reaped():
    burn = "import time\nwhile time.process_time() < 0.3: pass"
    # The shell reaps the burning child, then waits on its stdin: its cutime holds the child's CPU.
    shell = subprocess.Popen(["/bin/sh", "-c", f'{sys.executable} -c "{burn}"; echo done; read line'],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        with Meter() as meter:
            meter.add(shell.pid, "shell", group="a checkout")
            assert shell.stdout.readline() == "done\n"
            assert wait_for(lambda: meter.cpu("a checkout").get("shell", 0) >= 0.25, 10)  # 0.3 s, less tick rounding
            assert "shell" not in meter.cpu("another checkout")
    finally:
        shell.communicate("\n", timeout=10)

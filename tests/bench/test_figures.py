"""`make bench`'s table: one flat figure list per checkout, after/before where both have a figure,
and no figure at all where it would be ill-defined (bench/figures.py)."""

import math

from bench.figures import comparison, flatten, leaves, median_run, per_change_ms, ratio, table
from testing.stats import percentile


def test_cpu_per_change_is_no_figure_when_nothing_was_committed():
    assert per_change_ms(2.5, 500) == 5.0
    assert per_change_ms(2.5, 0) is None


def test_a_ratio_needs_both_figures_and_a_non_zero_baseline():
    assert ratio(300, 100) == 3.0
    assert ratio(None, 100) is None
    assert ratio(300, None) is None
    assert ratio(300, 0) is None
    assert ratio(math.nan, 100) is None


def test_the_comparison_lists_every_figure_of_either_side_with_its_ratio():
    rows = comparison({"creates/s": 300.0, "new figure": 1}, {"creates/s": 100.0, "old figure": 2})
    assert rows == [("creates/s", 300.0, 100.0, 3.0), ("new figure", 1, None, None), ("old figure", None, 2, None)]


def test_the_write_path_ratios_are_computed_within_one_checkout():
    row = {"requests_per_s": 0, "p50_ms": 1.0, "p99_ms": 2.0, "system_cpu_per_change_ms": None,
           "load_cpu_per_change_ms": None}
    flat = flatten({"write_path": {"events off": {**row, "requests_per_s": 200.0},
                                   "outbox + relay": {**row, "requests_per_s": 180.0},
                                   "sync produce+flush (seed)": {**row, "requests_per_s": 0}}})
    assert flat["write path (no consumer running), one user: outbox / events off"] == 0.9
    assert "write path (no consumer running), one user: outbox / seed's produce+flush" not in flat  # nothing to divide by


def test_a_throughput_figure_says_which_processes_ran():
    row = {"requests_per_s": 180.0, "p50_ms": 1.0, "p99_ms": 2.0, "system_cpu_per_change_ms": 5.0,
           "web_cpu_per_change_ms": 3.0, "load_cpu_per_change_ms": 1.0}
    flat = flatten({"write_path": {"outbox + relay": {**row, "processes": ["web", "relay"]},
                                   "sync produce+flush (seed)": {**row, "processes": ["web"]}},
                    "whole_system": {"outbox + relay": {**row, "processes": ["web", "relay", "worker", "audit"]}}})
    assert flat["write path, web + relay only, one user [outbox + relay]: web CPU ms/change"] == 3.0
    assert flat["write path, web only, one user [sync produce+flush (seed)]: creates/s"] == 180.0
    assert flat["whole system, all `make run` processes [outbox + relay]: system CPU ms/change"] == 5.0


def test_the_write_path_with_one_user_per_client_has_figures_and_ratios_of_its_own():
    row = {"p50_ms": 1.0, "p99_ms": 2.0, "system_cpu_per_change_ms": 5.0, "load_cpu_per_change_ms": 1.0,
           "processes": ["web", "relay"]}
    flat = flatten({"write_path": {"outbox + relay": {**row, "requests_per_s": 100.0},
                                   "events off": {**row, "requests_per_s": 400.0}},
                    "write_path_users": {"outbox + relay": {**row, "requests_per_s": 300.0},
                                         "events off": {**row, "requests_per_s": 400.0}}})
    assert flat["write path (no consumer running), one user: outbox / events off"] == 0.25
    assert flat["write path (no consumer running), one user per client: outbox / events off"] == 0.75
    assert flat["write path, web + relay only, one user per client [outbox + relay]: creates/s"] == 300.0


def test_the_table_aligns_figures_and_shows_a_missing_one_as_a_dash():
    text = table([("a figure", 1234.5, None), ("b", 0.5, 2)], ["figure", "after", "before"])
    assert text.splitlines() == ["figure      after  before",
                                 "a figure  1,234.5       -",
                                 "b           0.500       2"]


def test_percentiles_are_nearest_rank():
    assert percentile(list(range(1, 101)), 0.99) == 100
    assert percentile([5.0], 0.5) == 5.0
    assert math.isnan(percentile([], 0.5))


def test_the_figures_of_a_nested_result_are_its_numbers_named_by_their_path():
    result = {"reminders": {"burst": {"p99_ms": 310, "ok": True}}, "list": [{"query": "first page", "p50_ms": 1.5}]}
    assert leaves("growth", result) == {"growth: reminders burst p99_ms": 310, "growth: list first page p50_ms": 1.5}


def test_of_several_rounds_the_run_with_the_median_figure_is_kept_whole():
    runs = [{"requests_per_s": 90, "p99_ms": 9}, {"requests_per_s": 30, "p99_ms": 3}, {"requests_per_s": 60, "p99_ms": 6}]
    assert median_run(runs, "requests_per_s") == {"requests_per_s": 60, "p99_ms": 6, "runs": [90, 30, 60]}
    assert median_run(runs[:2], "requests_per_s")["requests_per_s"] == 30  # of two, the lower

"""One source for the list of processes: the consumer registry (events/consumers.yaml) names the
consumers and their commands, and `make run` (scripts/supervise.py), the drills and the browser tests
(testing.system) derive their process lists from it and the Procfile, so that adding a consumer
touches its handler and its registry entry only."""

import re

import pytest

from events.registry import CONSUMERS, ConsumerSpec
from events.topics import TASK_EVENTS
from scripts.supervise import configuration, read_procfile, system_processes
from testing.processes import REPO
from testing.system import event_commands

DIGEST = ConsumerSpec(name="digest", topic=TASK_EVENTS, group="digest-service", handler="audit.handlers.record_task_event")


def test_every_registered_consumer_is_a_process_of_make_run_and_no_process_is_named_twice():
    names = [name for name, _ in system_processes()]
    assert set(CONSUMERS) <= set(names)
    assert len(names) == len(set(names))


def test_a_consumer_runs_its_entrys_command_run_consumer_unless_it_names_another():
    commands = dict(system_processes())
    for name in CONSUMERS.keys() - {"scheduler"}:
        assert commands[name] == f"python manage.py run_consumer {name}"
    assert commands["scheduler"] == "python manage.py run_scheduler"  # its clock beside its consumer


def test_a_procfile_line_of_a_consumers_name_replaces_its_derived_process(tmp_path):
    procfile = tmp_path / "Procfile"
    procfile.write_text("web: gunicorn\naudit: python manage.py run_consumer audit --verbose\n")
    commands = dict(system_processes(procfile))
    assert commands["audit"] == "python manage.py run_consumer audit --verbose"
    assert commands["scheduler"] == "python manage.py run_scheduler"


def test_the_procfile_names_no_consumer_whose_process_the_registry_gives():
    assert not set(dict(read_procfile(REPO / "Procfile"))) & set(CONSUMERS)


def test_the_procfile_runs_only_registered_consumers():
    named = [re.search(r"run_consumer (\S+)", command) for _, command in read_procfile(REPO / "Procfile")]
    assert {match[1] for match in named if match} <= set(CONSUMERS)


def test_a_newly_registered_consumer_is_started_by_make_run_and_killed_by_the_drills(monkeypatch, tmp_path):
    monkeypatch.setitem(CONSUMERS, DIGEST.name, DIGEST)
    assert ("digest", "python manage.py run_consumer digest") in system_processes()
    assert "[program:digest]" in configuration(system_processes(), tmp_path)
    assert event_commands()["digest"] == "python manage.py run_consumer digest"


def test_the_drills_run_the_web_app_the_relay_and_every_consumer_but_not_celery_or_the_mail_catcher():
    assert set(event_commands()) == {"web", "relay", *CONSUMERS}
    assert event_commands()["web"] == dict(read_procfile(REPO / "Procfile"))["web"]


@pytest.mark.parametrize("name", sorted(CONSUMERS))
def test_each_consumer_of_the_registry_is_known_to_run_consumer(name):
    from events.management.commands.run_consumer import Command

    parser = Command().create_parser("manage.py", "run_consumer")
    assert parser.parse_args([name]).name == name

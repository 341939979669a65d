"""The processes of the running system, as `make run` starts them (scripts/supervise.py's list: the
Procfile's lines and one ``run_consumer`` per registered consumer), for the tests and drills that
run the whole system on infrastructure of their own."""

import os
from pathlib import Path

from events.registry import CONSUMERS
from scripts.supervise import shell_command, system_processes
from testing.processes import VENV_BIN, Process


def event_commands():
    """``{name: command}`` of the processes that carry events: the web app, the relay and every
    registered consumer's process (not celery, not the development mail catcher)."""
    carrying = {"web", "relay", *CONSUMERS}
    return {name: command for name, command in system_processes() if name in carrying}


def system_process(name, command, log_dir, env, **options):
    """A Process running ``command`` (a Procfile line's) through /bin/sh as supervisord runs it,
    with the virtualenv's programs first on PATH; ``env`` should set WEB_PORT for the web line."""
    env = {**env, "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"}
    return Process(["/bin/sh", "-c", shell_command(command)], log_dir / f"{name}.log", env, **options)


def event_processes(log_dir, env, web_port):
    """``{name: Process}`` (not started) of ``event_commands()``, the web app on ``web_port``, each in a
    session of its own so that a kill takes its children with it."""
    env = {**env, "WEB_PORT": str(web_port)}
    return {name: system_process(name, command, Path(log_dir), env, own_session=True)
            for name, command in event_commands().items()}

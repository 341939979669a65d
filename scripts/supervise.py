"""`make run`'s process supervisor: supervisord, configured from the Procfile at every start.

    python scripts/supervise.py run [Procfile]   # write the configuration, then become supervisord
    python scripts/supervise.py output           # (started by supervisord) the named-output listener

Why supervisord: honcho stops every process when one exits, so one crashing worker took the whole
system down. supervisord (pure Python, no dependencies, maintained for two decades) restarts a
process that exits, backs off when it keeps failing to start, logs each exit and spawn on the
terminal, and stops everything, process groups included, on Ctrl-C or SIGTERM. circus does the
same but brings ZeroMQ and Tornado along.

The processes are the Procfile's lines plus one for each consumer of the registry
(events/consumers.yaml) that no Procfile line names: its entry's command, ``python manage.py
run_consumer <name>`` unless it gives one (``scheduler`` runs ``run_scheduler``, its clock beside its
consumer). A consumer's process is derived from its registry entry, so adding a consumer touches its
handler and its entry only; a Procfile line of the same name would replace the derived one (for a
local variant). ``system_processes`` is that list, for the drills too; this
script turns each into a ``[program:<name>]`` section, so there is no second copy to keep in
step. Each command runs through ``/bin/sh`` as honcho ran it (``${VAR:-default}`` and
``VAR=value`` prefixes keep working), with ``exec env`` so that the supervised pid is the worker
itself and a ``kill -9`` of the worker is seen, and answered, by supervisord.

supervisord writes a child's output to files or, unprefixed, to its own stdout. To keep the
output of each process readable and named as honcho printed it (``12:00:00 audit | ...``),
every program sends its output as PROCESS_LOG events to one listener (``output`` below), which
writes them to the terminal line by line with the process name in front.

The configuration, pid file and control socket live in ``.cache/run/supervisor-<WEB_PORT>/``, one
directory per web port, so that two ``make run`` on different ports never share them; with it,
``supervisorctl -c .cache/run/supervisor-8000/supervisord.conf status`` (or ``restart audit``)
talks to a running ``make run``.
"""

import os
import re
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# A process that exits within STARTSECS of its start failed to start: supervisord waits 1 s, 2 s,
# 3 s, ... before each new attempt and gives up (state FATAL, logged) after STARTRETRIES of them,
# about four minutes of a crash loop. One that ran longer is restarted at once when it exits.
STARTSECS = 5
STARTRETRIES = 20
# Longer than the slowest clean stop (the web's graceful_timeout of 10 s, gunicorn.conf.py); then SIGKILL.
STOPWAITSECS = 15

PROCFILE_LINE = re.compile(r"^(?P<name>[A-Za-z0-9_-]+):\s*(?P<command>.+)$")


def read_procfile(path):
    """The ``(name, command)`` pairs of a Procfile, in order; comments and blank lines skipped."""
    processes = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = PROCFILE_LINE.match(line)
        if not match:
            raise SystemExit(f"{path}:{number}: not a 'name: command' line: {line!r}")
        processes.append((match["name"], match["command"].strip()))
    return processes


def registered_consumers():
    """``{name: command}`` of the registry's consumers (importing the registry needs no database or broker)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "todo_project.settings")
    from events.registry import CONSUMERS

    return {name: shlex.join(spec.command) for name, spec in CONSUMERS.items()}


def system_processes(procfile=REPO / "Procfile"):
    """The ``(name, command)`` pairs of `make run`: the Procfile's, then the command of each
    registered consumer that no Procfile line names."""
    processes = read_procfile(procfile)
    named = {name for name, _ in processes}
    return processes + [(name, command) for name, command in registered_consumers().items() if name not in named]


def shell_command(command):
    """A process's command as ``/bin/sh -c`` runs it: ``exec env`` makes the command itself the pid."""
    return "exec env " + command


def quote(value):
    """A value for supervisord's configuration, which expands %(name)s: a literal % is doubled."""
    return value.replace("%", "%%")


def configuration(processes, run_dir):
    width = max(len(name) for name, _ in processes)
    sections = [
        f"""[supervisord]
nodaemon = true
; Its own lines (spawned, exited, stopped) to the terminal through the same O_APPEND opening of
; /dev/stdout as the processes' output (not also through fd 1 itself, which "silent" turns off),
; so that the two never overwrite each other when the terminal is a file.
silent = true
logfile = /dev/stdout
logfile_maxbytes = 0
loglevel = info
{"user = root  ; as root already: says so, instead of a warning" if os.geteuid() == 0 else ""}
pidfile = {quote(str(run_dir / "supervisord.pid"))}
childlogdir = {quote(str(run_dir))}
directory = {quote(str(REPO))}

[unix_http_server]
file = {quote(str(run_dir / "supervisor.sock"))}

[supervisorctl]
serverurl = unix://{quote(str(run_dir / "supervisor.sock"))}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

; Started first and stopped last, so that it prints the last words of every other process.
[eventlistener:output]
command = {quote(sys.executable)} {quote(str(Path(__file__).resolve()))} output {width}
events = PROCESS_LOG
buffer_size = 10000
priority = 1
autorestart = true
stdout_logfile = NONE
stderr_logfile = /dev/stdout
stderr_logfile_maxbytes = 0
"""
    ]
    for name, command in processes:
        sections.append(
            f"""[program:{name}]
command = /bin/sh -c {quote(shell_quote(shell_command(command)))}
autorestart = true
startsecs = {STARTSECS}
startretries = {STARTRETRIES}
stopsignal = TERM
stopwaitsecs = {STOPWAITSECS}
stopasgroup = true
killasgroup = true
redirect_stderr = true
stdout_logfile = NONE
stdout_events_enabled = true
"""
        )
    return "\n".join(sections)


def shell_quote(text):
    """One argument for supervisord's shlex-style command parsing."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def run(procfile):
    processes = system_processes(procfile)
    run_dir = REPO / ".cache" / "run" / f"supervisor-{os.environ.get('WEB_PORT', '8000')}"
    run_dir.mkdir(parents=True, exist_ok=True)
    config = run_dir / "supervisord.conf"
    config.write_text(configuration(processes, run_dir))
    # Python workers print at once instead of in 8 KiB blocks (honcho set the same).
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    supervisord = Path(sys.executable).parent / "supervisord"
    names = ", ".join(name for name, _ in processes)
    print(f"==> supervisord: {names} (each restarted when it exits; configuration {config})", flush=True)
    os.execv(supervisord, [str(supervisord), "--nodaemon", "--configuration", str(config)])


def output(width):
    """supervisord's event-listener protocol on stdin/stdout; the processes' lines go to stderr.

    Each PROCESS_LOG event carries a chunk of one process's output, not necessarily whole lines,
    so a partial last line waits for the rest of it.
    """
    events, protocol, terminal = sys.stdin.buffer, sys.stdout.buffer, sys.stderr.buffer
    partial = {}
    while True:
        protocol.write(b"READY\n")
        protocol.flush()
        header = events.readline()
        if not header:
            return
        fields = dict(field.split(b":", 1) for field in header.split())
        payload = events.read(int(fields[b"len"]))
        meta, _, data = payload.partition(b"\n")
        name = dict(field.split(b":", 1) for field in meta.split())[b"processname"]
        lines = (partial.pop(name, b"") + data).split(b"\n")
        if lines[-1]:
            partial[name] = lines[-1]
        prefix = f"{time.strftime('%H:%M:%S')} {name.decode():<{width}} | ".encode()
        terminal.write(b"".join(prefix + line + b"\n" for line in lines[:-1]))
        terminal.flush()
        protocol.write(b"RESULT 2\nOK")
        protocol.flush()


if __name__ == "__main__":
    if sys.argv[1:2] == ["run"]:
        run(sys.argv[2] if len(sys.argv) > 2 else REPO / "Procfile")
    elif sys.argv[1:2] == ["output"]:
        output(int(sys.argv[2]))
    else:
        raise SystemExit(__doc__)

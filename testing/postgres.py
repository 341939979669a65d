"""A private PostgreSQL cluster for drills that kill and restart the database.

initdb'ed into a directory of its own on a free port (as the ``postgres`` OS user when we are
root), so that the shared server other work uses is never touched.
"""

import os
import shutil
import signal
import subprocess
from pathlib import Path

from testing.ports import free_port
from testing.waits import wait_until


def postgres_bin():
    """The bin directory of the newest PostgreSQL installed from Debian packages."""
    return sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))[-1]


class PrivatePostgres:
    """A throw-away cluster on a free port; ``kill()`` is SIGKILL of the postmaster and its backends."""

    def __init__(self, workdir, database="private"):
        self.bin = postgres_bin()
        self.workdir = Path(workdir)
        self.data = self.workdir / "pgdata"
        self.port = free_port()
        self.database = database
        self.as_root = os.getuid() == 0
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.as_root:
            shutil.chown(self.workdir, "postgres", "postgres")
        self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-E", "UTF8", "--no-locale",
                   "--auth=trust"], check=True, capture_output=True, timeout=120)
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"listen_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = '{self.workdir}'\n"
                       "max_connections = 200\nfsync = on\n")
        self.process = None
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, args, **kwargs):
        return subprocess.run(args, user="postgres" if self.as_root else None, cwd="/", **kwargs)

    def start(self):
        log = open(self.workdir / "postgres.log", "ab")
        self.process = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(self.data)], user="postgres" if self.as_root else None, cwd="/",
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        wait_until(self.answers, 120, "private PostgreSQL", interval=0.25)

    def create_database(self):
        subprocess.run([str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                        self.database], check=True)

    def answers(self):
        return subprocess.run([str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]).returncode == 0

    def kill(self):
        os.killpg(self.process.pid, signal.SIGKILL)  # its own session: the postmaster and every backend
        self.process.wait(30)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()

"""A private redis-server on a free port, for runs that must account for every process of the system
(bench/run_all.py sums the CPU of each one, Redis included) or must not share the machine's Redis."""

import subprocess
from pathlib import Path

import redis

from testing.ports import free_port
from testing.waits import wait_until


class PrivateRedis:
    """No persistence (as `make infra` starts its Redis: ``--save "" --appendonly no``); data in ``workdir``."""

    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    def start(self):
        with open(self.workdir / "redis.log", "ab") as log:
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir),
                 "--save", "", "--appendonly", "no", "--daemonize", "no"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        wait_until(lambda: self.answers() or self.process.poll() is not None, 30, "private redis", interval=0.1)
        if self.process.poll() is not None:
            raise RuntimeError(f"redis-server exited: {(self.workdir / 'redis.log').read_text()[-2000:]}")

    def answers(self):
        try:
            return redis.Redis.from_url(self.url, socket_connect_timeout=1).ping()
        except redis.RedisError:
            return False

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)

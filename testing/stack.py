"""A private PostgreSQL cluster and Kafka broker, and the environment that points the project's
processes (and, once started, this one) at them, for the drills (bench/faults.py, bench/drill.py)."""

import os
import subprocess
import sys
from pathlib import Path

from testing.kafka_broker import PrivateKafkaBroker
from testing.postgres import PrivatePostgres
from testing.processes import REPO

# What this process itself must see before anything reads Django settings.
OWN_SETTINGS = ("DEBUG", "DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "KAFKA_TOPIC_PREFIX", "KAFKA_GROUP_PREFIX",
                "CHANNEL_LAYER_PREFIX", "RATELIMIT_CACHE_PREFIX", "DJANGO_SETTINGS_MODULE")


class PrivateStack:
    """``start()`` brings both servers up, migrates and creates the topics, then sets Django up in
    this process, under a namespace of the drill's own (``name``) on the shared Redis."""

    def __init__(self, workdir, name, **extra_env):
        self.workdir = Path(workdir)
        self.postgres = PrivatePostgres(self.workdir / "postgres", database=name)
        self.broker = PrivateKafkaBroker(self.workdir / "kafka")
        prefix = f"{name}-{os.getpid()}-"
        self.env = {
            **os.environ,
            "DEBUG": "true",  # a development run on loopback: no HTTPS-only settings, a development key
            "DATABASE_URL": self.postgres.url,
            "KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap_servers,
            "KAFKA_TOPIC_PREFIX": prefix,
            "KAFKA_GROUP_PREFIX": prefix,
            "CHANNEL_LAYER_PREFIX": prefix,
            "RATELIMIT_CACHE_PREFIX": f"{prefix}rl:",  # the shared Redis: counters of this run only
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            "DJANGO_SETTINGS_MODULE": "todo_project.settings",
            **extra_env,
        }
        os.environ.update({key: self.env[key] for key in OWN_SETTINGS})

    def start(self):
        self.postgres.start()
        self.postgres.create_database()
        self.broker.start()
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=REPO, env=self.env, check=True)
        subprocess.run([sys.executable, "manage.py", "create_topics"], cwd=REPO, env=self.env, check=True,
                       stdout=subprocess.DEVNULL)
        import django

        django.setup()

    def stop(self):
        self.broker.stop()
        self.postgres.stop()

"""A scratch database and Kafka namespace for one benchmark run, dropped afterwards.

    with scratch_environment("bench") as env:   # env: the environment for worker subprocesses
        ...

Needs the infrastructure up (`make infra`). Django is set up on the scratch database inside.
"""

import os
import signal
import subprocess
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "todo_project.settings")


@contextmanager
def scratch_environment(label, **extra_env):
    run_id = uuid.uuid4().hex[:8]
    base_url = os.environ.get("DATABASE_URL", "postgres://todo:todo@127.0.0.1:5432/todo")
    parts = urlsplit(base_url)
    database = f"{label}_{run_id}"
    env = {
        **os.environ,
        "DATABASE_URL": urlunsplit(parts._replace(path="/" + database)),
        "KAFKA_TOPIC_PREFIX": f"{label}-{run_id}-",
        "KAFKA_GROUP_PREFIX": f"{label}-{run_id}-",
        "LOG_LEVEL": "WARNING",
        **extra_env,
    }
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "KAFKA_TOPIC_PREFIX", "KAFKA_GROUP_PREFIX")})
    import django
    import psycopg

    django.setup()
    from events.transports.kafka.admin import create_topics, delete_topics
    from events.topics import TOPICS, topic_name

    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    try:
        print(f"setting up database {database} and topics {env['KAFKA_TOPIC_PREFIX']}* …", flush=True)
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=REPO, env=env, check=True)
        create_topics()
        yield env
    finally:
        from django.db import connections

        connections.close_all()
        delete_topics([topic_name(spec.base_name) for spec in TOPICS])
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def stop_all(processes):
    """SIGTERM every process still running, wait for each, and kill what does not stop in 30 s."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()

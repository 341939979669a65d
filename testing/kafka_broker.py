"""A private, single-node Kafka broker for tests and drills that stop and start the broker.

The shared broker on 127.0.0.1:9092 serves every test run on this machine and must never be
stopped; a test or drill that needs Kafka to go away starts its own broker from the same jars
(`.cache/kafka/libs`, provisioned by `make infra`) on free ports, with its data in tmp_path,
and kills and restarts that one. Clients must bootstrap from ``broker.bootstrap_servers``:
the broker advertises its own port, so nothing of it leaks to the shared one.
"""

import base64
import subprocess
import uuid
from pathlib import Path

from confluent_kafka import KafkaException
from django.test import override_settings

from events.transports.kafka.admin import admin_client, create_topics
from testing.ports import free_port
from testing.waits import wait_until

REPO = Path(__file__).resolve().parent.parent
KAFKA_LIBS = REPO / ".cache" / "kafka" / "libs"
TEMPLATE = REPO / "infra" / "kafka" / "server.properties.template"
LOG4J = REPO / "infra" / "kafka" / "log4j2.yaml"


def _cluster_id():
    """A KRaft cluster id: a UUID in URL-safe base64 without padding. Like Kafka's own
    Uuid.randomUuid, never one starting with "-", which the command line would take for an option."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class PrivateKafkaBroker:
    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.port, self.controller_port = free_port(), free_port()
        self.bootstrap_servers = f"127.0.0.1:{self.port}"
        self.properties = self.workdir / "server.properties"
        self.logs = self.workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.process = None
        self._configure()

    def _configure(self):
        config = (
            TEMPLATE.read_text()
            .replace("@DATA_DIR@", str(self.workdir / "data"))
            .replace("127.0.0.1:9092", self.bootstrap_servers)
            .replace("127.0.0.1:9093", f"127.0.0.1:{self.controller_port}")
        )
        self.properties.write_text(config)
        cluster_id = _cluster_id()
        subprocess.run(
            self._java("kafka.tools.StorageTool", "format", "--standalone", "-t", cluster_id, "-c", str(self.properties)),
            check=True, capture_output=True, timeout=120,
        )

    def _java(self, main_class, *args):
        return [
            "java", "-Xms128m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            f"-Dlog4j2.configurationFile={LOG4J}", f"-Dkafka.logs.dir={self.logs}",
            "-cp", f"{KAFKA_LIBS}/*", main_class, *args,
        ]

    def start(self, timeout=120):
        assert self.process is None or self.process.poll() is not None, "already running"
        out = open(self.logs / "kafka.out", "a")
        self.process = subprocess.Popen(
            self._java("kafka.Kafka", str(self.properties)), stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        out.close()
        wait_until(lambda: self.answers() or self.process.poll() is not None, timeout, "private broker", interval=0.5)
        if self.process.poll() is not None:
            raise RuntimeError(f"private broker exited: {(self.logs / 'kafka.out').read_text()[-2000:]}")

    def answers(self):
        try:
            # log_level 0: a probe of a broker that is still starting need not log refused connections.
            admin = admin_client(**{"bootstrap.servers": self.bootstrap_servers, "log_level": 0})
            metadata = admin.list_topics(timeout=2)
            return bool(metadata.brokers)
        except KafkaException:
            return False

    def kill(self):
        """SIGKILL: the broker vanishes mid-flight, as in a crash or a network cut."""
        self.process.kill()
        self.process.wait(60)

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()

    def create_topics(self):
        with override_settings(KAFKA_BOOTSTRAP_SERVERS=self.bootstrap_servers):
            return create_topics()


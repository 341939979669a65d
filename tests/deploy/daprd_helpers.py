"""A real Dapr sidecar for the end-to-end tests of EVENT_TRANSPORT=dapr.

``daprd`` is upstream Dapr built by ``make daprd`` (scripts/daprd.sh) into .cache/bin. The sidecars
load the Dapr documents that the Helm chart renders with its dapr profile (ci/dapr-values.yaml),
with only what differs on this machine set through chart values: the local broker (the ``external``
Kafka provider, plaintext, no SASL: authType none), this run's topic and group prefixes, and
shorter redelivery backoffs. Each document goes into a file of its own: standalone daprd ignores a
Resiliency that shares a multi-document file with other resources (on Kubernetes every document is
an object of its own, so the chart's single template is right there).

The stack mirrors the chart's pods: the relay's sidecar (app-id ``<release>-relay``, the publisher
component), and per Dapr-delivered consumer one delivery application
(``uvicorn todo_project.delivery_asgi:application`` with DAPR_CONSUMERS=<consumer>) behind its own
sidecar (app-id ``<release>-<consumer>``, the consumer's component, Subscription and token).
"""

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml
from django.conf import settings

from testing.ports import free_port
from testing.processes import REPO, Process, program, wait_until_serving, worker_environment

DAPRD = REPO / ".cache" / "bin" / "daprd"
HELM = REPO / ".cache" / "bin" / "helm"
CHART = REPO / "helm" / "todo-platform"
RELEASE = "e2e"
FULLNAME = f"{RELEASE}-todo-platform"
APP_API_TOKEN = "e2e-dapr-app-api-token"
# What differs on this machine from the chart's dapr profile, as chart values. The redelivery
# backoff is shortened so that a message answered RETRY reaches the Subscription's deadLetterTopic
# within seconds (the chart's default waits up to 15 s between retries).
def local_values(topic_prefix, group_prefix):
    return {
        "kafka": {
            "provider": "external", "securityProtocol": "PLAINTEXT",
            "bootstrapServers": settings.KAFKA_BOOTSTRAP_SERVERS,
            "topicPrefix": topic_prefix, "groupPrefix": group_prefix,
        },
        "dapr": {"retry": {"maxInterval": "1s", "maxRetries": 2}},
    }


READY_TIMEOUT = 30.0


def app_id(process):
    return f"{FULLNAME}-{process}"


def publisher_component():
    return f"{FULLNAME}-pubsub"


def consumer_component(consumer):
    return f"{FULLNAME}-pubsub-{consumer}"


def rendered_dapr_documents(topic_prefix, group_prefix, work_dir):
    """The Dapr resources (Component, Subscription, Resiliency) of the chart's dapr profile, for
    this machine's broker and this run's topic and group prefixes."""
    values = work_dir / "local-values.yaml"
    values.write_text(yaml.safe_dump(local_values(topic_prefix, group_prefix)))
    rendered = subprocess.run(
        [str(HELM), "template", RELEASE, str(CHART), "-f", str(CHART / "ci" / "dapr-values.yaml"), "-f", str(values),
         "--show-only", "templates/dapr.yaml"],
        capture_output=True, text=True, check=False,
    )
    assert rendered.returncode == 0, rendered.stderr
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc and doc["apiVersion"].startswith("dapr.io/")]


def write_resources(documents, directory):
    """One file per document (see the module docstring); returns the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    for index, document in enumerate(documents):
        name = f"{index:02d}-{document['kind'].lower()}-{document['metadata']['name']}.yaml"
        (directory / name).write_text(yaml.safe_dump(document, sort_keys=False))
    return directory



class Sidecar:
    """One daprd process on loopback ports of its own; ``stop``/``kill`` and ``start`` again keep them."""

    def __init__(self, app_id, resources, log_path, *, app_port=None):
        self.app_id, self.resources, self.log_path, self.app_port = app_id, resources, Path(log_path), app_port
        self.http_port, self.grpc_port, self.internal_grpc_port = free_port(), free_port(), free_port()
        self.process = None

    def command(self):
        command = [
            str(DAPRD), "--mode", "standalone", "--app-id", self.app_id, "--resources-path", str(self.resources),
            "--dapr-http-port", str(self.http_port), "--dapr-grpc-port", str(self.grpc_port),
            "--dapr-internal-grpc-port", str(self.internal_grpc_port),
            # Loopback only; no metrics port (several sidecars run side by side), no mDNS.
            "--dapr-listen-addresses", "127.0.0.1", "--dapr-internal-grpc-listen-address", "127.0.0.1",
            "--enable-metrics=false", "--log-level", "info",
        ]
        if self.app_port is not None:
            command += ["--app-port", str(self.app_port), "--app-channel-address", "127.0.0.1"]
            command += ["--app-protocol", "http"]
        return command

    def start(self):
        # APP_API_TOKEN: the token the sidecar sends in dapr-api-token (the chart's app-token-secret).
        env = {**os.environ, "APP_API_TOKEN": APP_API_TOKEN}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command(), env=env, stdout=log, stderr=subprocess.STDOUT)
        self.wait_ready()
        return self

    def wait_ready(self, timeout=READY_TIMEOUT):
        """Until the sidecar's components are up (and its app answers, when it has one)."""
        path = "/v1.0/healthz" if self.app_port is not None else "/v1.0/healthz/outbound"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"daprd {self.app_id} exited:\n{self.log()}"
            try:
                if httpx.get(f"http://127.0.0.1:{self.http_port}{path}", timeout=2).status_code == 204:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"daprd {self.app_id} not ready after {timeout}s:\n{self.log()}")

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout=30):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout)

    def kill(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)


class DeliveryPod:
    """A consumer's delivery application and its sidecar, as the chart's Deployment runs them."""

    def __init__(self, consumer, resources, log_dir):
        self.consumer, self.log_dir = consumer, log_dir
        self.app_port = free_port()
        self.sidecar = Sidecar(app_id(consumer), resources, log_dir / f"daprd-{consumer}.log", app_port=self.app_port)
        self.app = None

    def start_app(self, **env):
        """The delivery application as the chart configures it, with ``env`` changed."""
        env = worker_environment(**{
            "EVENT_TRANSPORT": "dapr", "DAPR_CONSUMERS": self.consumer,
            "DAPR_PUBSUB_NAME": consumer_component(self.consumer), "DAPR_HTTP_PORT": str(self.sidecar.http_port),
            "DAPR_APP_API_TOKEN": APP_API_TOKEN, **env,
        })
        self.app = Process(
            program("uvicorn", "todo_project.delivery_asgi:application", "--host", "127.0.0.1", "--port",
                    str(self.app_port), "--no-access-log"),
            self.log_dir / f"delivery-{self.consumer}.log", env,
        ).start()
        wait_until_serving(f"http://127.0.0.1:{self.app_port}", self.app)

    def start(self):
        self.start_app()
        self.sidecar.start()
        return self

    def stop(self):
        self.sidecar.stop()
        self.app.stop()


class DaprStack:
    """The relay's sidecar and a delivery pod per consumer the chart subscribes."""

    def __init__(self, log_dir, topic_prefix, group_prefix):
        self.documents = rendered_dapr_documents(topic_prefix, group_prefix, log_dir)
        resources = write_resources(self.documents, log_dir / "resources")
        self.relay_sidecar = Sidecar(app_id("relay"), resources, log_dir / "daprd-relay.log")
        routes = [doc["spec"]["routes"]["default"] for doc in self.documents if doc["kind"] == "Subscription"]
        subscribed = sorted(route.rsplit("/", 1)[1] for route in routes)
        self.pods = {name: DeliveryPod(name, resources, log_dir) for name in subscribed}

    def start(self):
        self.relay_sidecar.start()
        for pod in self.pods.values():
            pod.start()
        return self

    def stop(self):
        for pod in self.pods.values():
            pod.stop()
        self.relay_sidecar.stop()

    def resiliency_retries(self):
        """maxRetries of the rendered Resiliency's eventDelivery policy."""
        [resiliency] = [doc for doc in self.documents if doc["kind"] == "Resiliency"]
        return int(resiliency["spec"]["policies"]["retries"]["eventDelivery"]["maxRetries"])

    def logs(self):
        parts = [f"--- relay sidecar\n{self.relay_sidecar.log()}"]
        for name, pod in self.pods.items():
            parts += [f"--- {name} sidecar\n{pod.sidecar.log()}", f"--- {name} delivery app\n{pod.app.log()}"]
        return "\n".join(parts)


def require_daprd():
    if not os.access(DAPRD, os.X_OK):
        pytest.fail(f"{DAPRD} is missing: `make daprd` builds it (a step of `make test`)")
    if not os.access(HELM, os.X_OK):
        pytest.fail(f"{HELM} is missing: `make tools` builds it (a step of `make test`)")


"""The Helm chart in helm/todo-platform: it lints and renders for every values profile, and every
document it renders is valid for the API that will receive it.

Validation is offline and strict (unknown fields are errors, as with `kubectl apply
--validate=strict`):
- Kubernetes kinds against the JSON schemas of the Kubernetes 1.37 API that the PyPI package
  kubernetes-validate ships (generated from the API's OpenAPI document, "strict" variant);
- Strimzi, Dapr and KEDA resources against the openAPIV3Schema of their upstream CRDs in
  infra/kube/crds/ (see ORIGIN.md there), the same that the real API server of test_kube.py is given.
Any other kind without a schema fails.

The chart's consumers are the registry's own file, events/consumers.yaml, read through the link
files/consumers.yaml (Helm follows it in lint, template and package); the rendered workers are
checked against the loaded registry (events.registry.CONSUMERS): a consumer without its Deployment,
or with another topic, group or command, fails here.

helm itself is built from the Go module proxy by scripts/tools.sh (`make tools`, a step of `make
test`); the fixture (conftest.py) runs the same script, which is a no-op once helm is built.
"""

import copy
import re
import subprocess
import sys
import tarfile
from functools import cache
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from events.registry import CONSUMERS, CONSUMERS_FILE
from events.transports.dapr import dapr_consumers
from events.topics import TOPICS, dead_letter_topic
from infra.kube.lifecycle import CRD_DIR

pytestmark = pytest.mark.timeout(1200)

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "todo-platform"
KUBERNETES_VERSION = "1.37.0"
RELEASE = "todo"
NAMESPACE = "todo"

# Each profile is the list of values files of one `helm install`; the combination renders the
# options together on the Kafka choice that needs SASL (credentials from the Secret).
PROFILES = {
    "default": [],
    "strimzi": ["strimzi"],
    "redpanda": ["redpanda"],
    "redpanda-cloud": ["redpanda-cloud"],
    "external": ["external"],
    "dapr": ["dapr"],
    "keda": ["keda"],
    "redpanda-cloud+dapr+keda": ["redpanda-cloud", "dapr", "keda"],
}

# The registry's consumers (CONTRACT.md section 4: one consumer group per service): name -> (topic, group).
CONSUMER_GROUPS = {name: (spec.topic, spec.group) for name, spec in CONSUMERS.items()}
# Those that Dapr delivers to and KEDA scales (the others need a Kafka consumer of their own).
DELIVERED_CONSUMERS = {name for name, spec in CONSUMERS.items() if spec.via_dapr}
SECRET_VARIABLES = {
    "SECRET_KEY", "DATABASE_URL", "REDIS_URL", "REDIS_PASSWORD", "KAFKA_SASL_PASSWORD", "EMAIL_HOST_PASSWORD", "LLM_API_KEY",
}
# What only `make run` reads (its mail catcher): never part of a deployment.
DEVELOPMENT_ONLY_VARIABLES = {"MAIL_CATCHER_HTTP_PORT"}
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def values_args(profile):
    return [arg for name in PROFILES[profile] for arg in ("-f", str(CHART / "ci" / f"{name}-values.yaml"))]


def render(helm, profile, *extra):
    result = subprocess.run(
        [helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", KUBERNETES_VERSION,
         *values_args(profile), *extra],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="session")
def rendered(helm):
    return {profile: render(helm, profile) for profile in PROFILES}


def of_kind(documents, kind):
    return [doc for doc in documents if doc["kind"] == kind]


def by_name(documents, kind):
    return {doc["metadata"]["name"]: doc for doc in of_kind(documents, kind)}


def full(name):
    return f"{RELEASE}-todo-platform-{name}"


# --- CRD schemas --------------------------------------------------------------------------------

def strict_schema(schema):
    """A CRD's structural schema as plain JSON Schema that, like the API server's strict field
    validation, rejects fields it does not declare (the API server would silently prune them)."""
    schema = copy.deepcopy(schema)

    def tighten(node):
        if isinstance(node, list):
            for item in node:
                tighten(item)
            return
        if not isinstance(node, dict):
            return
        if node.get("nullable") and isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        for key, value in node.items():
            if key == "properties":
                for child in value.values():
                    tighten(child)
            elif key in {"items", "additionalProperties"}:
                tighten(value)
            # allOf/anyOf/oneOf/not of a structural schema only constrain the fields the node declares
            # (e.g. "certificate or pattern"): closing them too would refuse every valid object.

    tighten(schema)
    # Object metadata is the API server's ObjectMeta, checked separately (see check_metadata).
    schema["properties"]["metadata"] = {"type": "object"}
    return schema


@cache
def crd_schemas():
    if not CRD_DIR.is_dir():
        pytest.fail(f"the CRDs of Strimzi, Dapr and KEDA are expected in {CRD_DIR}")
    schemas = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served"):
                    schemas[(f"{group}/{version['name']}", kind)] = strict_schema(
                        version["schema"]["openAPIV3Schema"]
                    )
    return schemas


def crd_groups():
    return {api_version.split("/")[0] for api_version, _ in crd_schemas()}


def check_metadata(doc):
    name = doc["metadata"]["name"]
    assert len(name) <= 253 and DNS_SUBDOMAIN.match(name), f"{doc['kind']} name {name!r} is not a DNS subdomain"
    for key, value in {**doc["metadata"].get("labels", {}), **doc["metadata"].get("annotations", {})}.items():
        assert isinstance(value, str), f"{doc['kind']}/{name}: {key} must be a string, not {value!r}"


def validate_document(doc):
    api_version, kind = doc["apiVersion"], doc["kind"]
    group = api_version.split("/")[0] if "/" in api_version else ""
    check_metadata(doc)
    if group in crd_groups():
        schema = crd_schemas().get((api_version, kind))
        assert schema is not None, f"{kind} {api_version}: no served version of that CRD in {CRD_DIR}"
        jsonschema.Draft4Validator(schema).validate(doc)
    elif group == "keda.sh":
        pass  # no KEDA CRD offline: see the KEDA tests below
    else:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


# --- lint, render, validate ---------------------------------------------------------------------

@pytest.mark.parametrize("profile", PROFILES)
def test_helm_lint_passes_for_each_values_profile(helm, profile):
    result = subprocess.run(
        [helm, "lint", "--strict", str(CHART), "--namespace", NAMESPACE, "--kube-version", KUBERNETES_VERSION,
         *values_args(profile)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("profile", PROFILES)
def test_every_rendered_document_validates_against_its_schema(rendered, profile):
    errors = []
    for doc in rendered[profile]:
        try:
            validate_document(doc)
        except (AssertionError, jsonschema.ValidationError, kubernetes_validate.utils.ValidationError,
                kubernetes_validate.utils.SchemaNotFoundError) as error:
            errors.append(f"{doc['kind']}/{doc['metadata'].get('name')}: {error}")
    assert not errors, "\n\n".join(errors)


def test_validation_rejects_a_field_the_api_does_not_know(rendered):
    documents = rendered["redpanda-cloud+dapr+keda"]
    deployment = copy.deepcopy(of_kind(documents, "Deployment")[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.utils.ValidationError):
        validate_document(deployment)
    component = copy.deepcopy(of_kind(documents, "Component")[0])
    component["spec"]["consumerGroup"] = "audit-service"  # belongs in spec.metadata
    with pytest.raises(jsonschema.ValidationError):
        validate_document(component)


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("kafka.provider=zookeeper", "/kafka/provider"),
        ("workers.celeryBeat.replicas=2", "/workers/celeryBeat"),
        ("kafka.strimzi.version=3.7.0", "/kafka/strimzi/version"),
    ],
)
def test_values_that_would_deploy_something_wrong_are_refused(helm, setting, complaint):
    result = subprocess.run(
        [helm, "template", RELEASE, str(CHART), "--set", setting], capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0 and complaint in result.stderr, result.stderr


# --- processes ----------------------------------------------------------------------------------

def containers(documents):
    for kind in ("Deployment", "Job"):
        for doc in of_kind(documents, kind):
            for container in doc["spec"]["template"]["spec"]["containers"]:
                yield doc, container


@pytest.mark.parametrize("profile", ["default", "external"])
def test_every_process_of_the_system_runs_from_the_one_image(rendered, profile):
    documents = rendered[profile]
    commands = {" ".join(container["command"]) for _, container in containers(documents)}
    assert commands >= {
        "gunicorn -c gunicorn.conf.py --bind 0.0.0.0:8000",
        "python manage.py relay_outbox",
        "python manage.py run_consumer audit",
        "python manage.py run_consumer recurrence",
        "python manage.py run_consumer notifications",
        "python manage.py run_consumer realtime",
        "python manage.py run_scheduler",
        "celery -A todo_project worker --loglevel=INFO",
        "celery -A todo_project beat --loglevel=INFO",
    }
    assert {container["image"] for _, container in containers(documents)} == {"todo-platform:0.1.0"}


@pytest.mark.parametrize("profile", PROFILES)
def test_every_long_running_process_has_probes_resources_and_runs_as_non_root(rendered, profile):
    for doc, container in containers(rendered[profile]):
        pod = doc["spec"]["template"]["spec"]
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] == "Deployment":
            assert "livenessProbe" in container and "readinessProbe" in container, where
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"], where
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert container["securityContext"]["allowPrivilegeEscalation"] is False, where


def test_workers_are_probed_on_the_metrics_port_and_get_time_to_commit_on_shutdown(rendered):
    deployments = by_name(rendered["default"], "Deployment")
    for name in ["relay", *CONSUMER_GROUPS]:
        pod = deployments[full(name)]["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert {"name": "metrics", "containerPort": 9100, "protocol": "TCP"} in container["ports"]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert pod["terminationGracePeriodSeconds"] >= 60
    config = by_name(rendered["default"], "ConfigMap")[full("config")]["data"]
    assert config["METRICS_PORT"] == "9100"


def test_the_chart_reads_the_registrys_own_file_and_its_package_carries_the_content(helm, tmp_path):
    link = CHART / "files" / "consumers.yaml"
    assert link.is_symlink() and link.resolve() == CONSUMERS_FILE.resolve()
    result = subprocess.run([helm, "package", str(CHART), "--destination", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    [package] = tmp_path.glob("*.tgz")
    with tarfile.open(package) as archive:
        packaged = archive.extractfile(f"{CHART.name}/files/consumers.yaml").read()
    assert packaged == CONSUMERS_FILE.read_bytes()


@pytest.mark.parametrize("profile", PROFILES)
def test_the_chart_runs_each_consumer_of_the_registry_and_no_other(rendered, profile):
    documents = rendered[profile]
    workers = {doc["metadata"]["labels"]["app.kubernetes.io/component"]: doc for doc in of_kind(documents, "Deployment")}
    assert set(workers) - {"web", "relay", "celery-worker", "celery-beat"} == set(CONSUMERS)
    delivered = {name for name in CONSUMERS if "dapr.io/app-port" in
                 workers[name]["spec"]["template"]["metadata"]["annotations"]}
    for name in CONSUMERS:
        (container,) = workers[name]["spec"]["template"]["spec"]["containers"]
        if name not in delivered:  # a Dapr delivery pod runs the delivery app instead
            assert container["command"] == list(CONSUMERS[name].command), name
    if "dapr" in profile:
        assert delivered == DELIVERED_CONSUMERS
    if "keda" in profile:
        scaled = {doc["spec"]["scaleTargetRef"]["name"] for doc in of_kind(documents, "ScaledObject")}
        assert scaled == {full(name) for name in DELIVERED_CONSUMERS}


def test_consumers_share_one_values_block_and_each_may_differ_by_its_own_key(helm):
    documents = render(helm, "default", "--set", "workers.audit.replicas=2",
                       "--set", "workers.consumers.resources.limits.memory=400Mi")
    deployments = by_name(documents, "Deployment")
    assert {name: deployments[full(name)]["spec"]["replicas"] for name in CONSUMERS} == {
        name: 2 if name == "audit" else 1 for name in CONSUMERS
    }
    for name in CONSUMERS:
        (container,) = deployments[full(name)]["spec"]["template"]["spec"]["containers"]
        assert container["resources"]["limits"]["memory"] == "400Mi"
    relay = deployments[full("relay")]["spec"]["template"]["spec"]["containers"][0]
    assert relay["resources"]["limits"]["memory"] == "256Mi"


def test_web_probes_pass_djangos_host_check(rendered):
    web = by_name(rendered["default"], "Deployment")[full("web")]["spec"]["template"]["spec"]["containers"][0]
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    host = {h["name"]: h["value"] for h in web["livenessProbe"]["httpGet"]["httpHeaders"]}["Host"]
    config = by_name(rendered["default"], "ConfigMap")[full("config")]["data"]
    assert host in config["ALLOWED_HOSTS"].split(",")


@pytest.mark.parametrize("profile", PROFILES)
def test_celery_beat_runs_exactly_one_replica_and_never_two_during_a_rollout(rendered, profile):
    beat = by_name(rendered[profile], "Deployment")[full("celery-beat")]
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}


@pytest.mark.parametrize("profile", PROFILES)
def test_migrations_run_as_a_hook_before_install_and_upgrade(rendered, profile):
    (job,) = of_kind(rendered[profile], "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    if profile in {"default", "strimzi", "dapr", "keda"}:
        # KafkaTopic resources own the topics of a Strimzi cluster, which does not exist yet then.
        assert command == ["sh", "-c", "python manage.py migrate --noinput"]
    else:
        assert command == ["sh", "-c", "python manage.py migrate --noinput && python manage.py create_topics"]
    # What the hook reads must exist before it: the ConfigMap, Secret and ServiceAccount are
    # hooks too, of a lower weight.
    job_weight = int(job["metadata"]["annotations"]["helm.sh/hook-weight"])
    needed = [by_name(rendered[profile], "ConfigMap")[full("config")], *of_kind(rendered[profile], "ServiceAccount"),
              *of_kind(rendered[profile], "Secret")]
    for doc in needed:
        annotations = doc["metadata"]["annotations"]
        assert "pre-install" in annotations["helm.sh/hook"], doc["kind"]
        # and a rollback restores them (test_kube.py shows it on a real server)
        assert "pre-rollback" in annotations["helm.sh/hook"], doc["kind"]
        assert int(annotations["helm.sh/hook-weight"]) < job_weight, doc["kind"]


def test_every_pod_and_pdb_selects_only_its_own_process(rendered):
    documents = rendered["default"]
    for pdb in of_kind(documents, "PodDisruptionBudget"):
        targets = [
            doc for doc in of_kind(documents, "Deployment")
            if pdb["spec"]["selector"]["matchLabels"].items() <= doc["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert [doc["metadata"]["name"] for doc in targets] == [pdb["metadata"]["name"]]


# --- configuration ------------------------------------------------------------------------------

def test_configmap_and_secret_carry_every_variable_of_env_example(rendered):
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    documents = rendered["default"]
    config = by_name(documents, "ConfigMap")[full("config")]["data"]
    secret = by_name(documents, "Secret")[full("secrets")]["stringData"]
    expected = documented - SECRET_VARIABLES - DEVELOPMENT_ONLY_VARIABLES
    assert expected <= set(config), expected - set(config)
    assert set(secret) == SECRET_VARIABLES
    assert not set(config) & SECRET_VARIABLES


@pytest.mark.e2e  # starts a Django process in its body
@pytest.mark.parametrize("profile", ["default", "redpanda-cloud+dapr+keda"])
def test_django_settings_accept_the_rendered_configuration(rendered, profile):
    documents = rendered[profile]
    env = dict(by_name(documents, "ConfigMap")[full("config")]["data"])
    secret = by_name(documents, "Secret").get(full("secrets"))
    env.update(secret["stringData"] if secret else {name: "from-the-existing-secret" for name in SECRET_VARIABLES})
    if not secret:
        env["DATABASE_URL"] = "postgres://todo:secret@postgres:5432/todo"
        env["REDIS_URL"] = "redis://:secret@redis:6379/0"
    # As inside a pod: Kubernetes sets KUBERNETES_SERVICE_HOST, which makes SECRET_KEY mandatory.
    env.update(
        {"PATH": "/usr/bin:/bin", "KUBERNETES_SERVICE_HOST": "kubernetes.default.svc",
         "DJANGO_SETTINGS_MODULE": "todo_project.settings"}
    )
    probe = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.EVENT_TRANSPORT, s.KAFKA_SECURITY_PROTOCOL, s.EMAIL_PORT, s.DEBUG, 'localhost' in s.ALLOWED_HOSTS)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    transport, protocol, email_port, debug, localhost_allowed = result.stdout.split()
    assert transport == env["EVENT_TRANSPORT"] and protocol == env["KAFKA_SECURITY_PROTOCOL"]
    assert (email_port, debug, localhost_allowed) == ("587", "False", "True")


def secret_refs(container):
    """{variable: (Secret name, key)} of a container's variables that come from Secrets."""
    return {
        item["name"]: (item["valueFrom"]["secretKeyRef"]["name"], item["valueFrom"]["secretKeyRef"]["key"])
        for item in container.get("env", []) if "secretKeyRef" in item.get("valueFrom", {})
    }


def test_an_existing_secret_replaces_the_charts_own(rendered):
    documents = rendered["redpanda-cloud"]
    assert not of_kind(documents, "Secret")
    for _, container in containers(documents):
        assert secret_refs(container)["SECRET_KEY"] == ("todo-secrets", "SECRET_KEY")
        assert all(name == "todo-secrets" for name, _ in secret_refs(container).values())


def test_redpanda_cloud_speaks_sasl_scram_over_tls(rendered):
    config = by_name(rendered["redpanda-cloud"], "ConfigMap")[full("config")]["data"]
    assert config["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert config["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-256"
    assert config["KAFKA_SASL_USERNAME"] == "todo-platform"
    assert config["KAFKA_BOOTSTRAP_SERVERS"] == "seed-0a1b2c3d.cloud.redpanda.com:9092"


def test_ingress_keeps_websockets_open(rendered):
    (ingress,) = of_kind(rendered["default"], "Ingress")
    annotations = ingress["metadata"]["annotations"]
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 3600
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == full("web")


# --- Strimzi ------------------------------------------------------------------------------------

def test_strimzi_cluster_is_kraft_on_kafka_4_with_metrics(rendered):
    documents = rendered["strimzi"]
    (kafka,) = of_kind(documents, "Kafka")
    (pool,) = of_kind(documents, "KafkaNodePool")
    assert kafka["apiVersion"] == pool["apiVersion"] == "kafka.strimzi.io/v1"
    assert kafka["spec"]["kafka"]["version"].startswith("4.")
    assert sorted(pool["spec"]["roles"]) == ["broker", "controller"]
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    metrics_ref = kafka["spec"]["kafka"]["metricsConfig"]["valueFrom"]["configMapKeyRef"]
    metrics = by_name(documents, "ConfigMap")[metrics_ref["name"]]
    assert yaml.safe_load(metrics["data"][metrics_ref["key"]])["rules"]
    config = by_name(documents, "ConfigMap")[full("config")]["data"]
    assert config["KAFKA_BOOTSTRAP_SERVERS"] == f"{kafka['metadata']['name']}-kafka-bootstrap:9093"


def test_strimzi_topics_are_the_applications_topics(rendered):
    topics = {doc["spec"]["topicName"]: doc["spec"] for doc in of_kind(rendered["strimzi"], "KafkaTopic")}
    assert set(topics) == {spec.base_name for spec in TOPICS}
    for spec in TOPICS:
        assert topics[spec.base_name]["partitions"] == 3
        assert topics[spec.base_name].get("config", {}) == spec.config
    assert {dead_letter_topic(name) for name in ("task-events", "reminders", "task-updates")} <= set(topics)


# Exactly what each process may do on the chart's Kafka (CONTRACT.md section 4's producers and
# groups): the relay alone writes events; a consumer reads its topic under its group and writes
# its dead letters; the web process may only ask for metadata (/readyz).
KAFKA_RIGHTS = {
    "relay": {("topic", "task-events"): ["Write", "Describe"], ("topic", "reminders"): ["Write", "Describe"],
              ("topic", "task-updates"): ["Write", "Describe"], ("cluster", None): ["IdempotentWrite"]},
    **{
        name: {("topic", topic): ["Read", "Describe"], ("group", group): ["Read"], ("topic", f"{topic}.dlq"): ["Write", "Describe"]}
        for name, (topic, group) in CONSUMER_GROUPS.items()
    },
    "web": {},
}


def test_strimzi_authenticates_every_client_over_tls_and_authorizes_each_with_acls(rendered):
    (kafka,) = of_kind(rendered["strimzi"], "Kafka")
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    assert listener["tls"] is True and listener["authentication"] == {"type": "scram-sha-512"}
    assert kafka["spec"]["kafka"]["authorization"] == {"type": "simple"}
    # Only the pods of the processes that use Kafka may open a connection.
    (peer,) = listener["networkPolicyPeers"]
    (expression,) = peer["podSelector"]["matchExpressions"]
    assert sorted(expression["values"]) == sorted(KAFKA_RIGHTS)
    config = by_name(rendered["strimzi"], "ConfigMap")[full("config")]["data"]
    assert (config["KAFKA_SECURITY_PROTOCOL"], config["KAFKA_SASL_MECHANISM"]) == ("SASL_SSL", "SCRAM-SHA-512")


def test_each_process_has_a_kafka_user_allowed_exactly_its_topics_and_group(rendered):
    users = by_name(rendered["strimzi"], "KafkaUser")
    rights = {}
    for name, user in users.items():
        assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
        assert user["spec"]["authorization"]["type"] == "simple"
        rights[name] = {
            (acl["resource"]["type"], acl["resource"].get("name")): acl["operations"]
            for acl in user["spec"]["authorization"]["acls"]
        }
        assert all(acl.get("type", "allow") == "allow" and acl["resource"].get("patternType", "literal") == "literal"
                   for acl in user["spec"]["authorization"]["acls"])
    assert rights == {full(process): expected for process, expected in KAFKA_RIGHTS.items()}


def test_each_kafka_process_authenticates_as_its_own_user_and_trusts_the_cluster_ca(rendered):
    documents = rendered["strimzi"]
    config = by_name(documents, "ConfigMap")[full("config")]["data"]
    (kafka,) = of_kind(documents, "Kafka")
    for doc, container in containers(documents):
        process = doc["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
        env = {item["name"]: item for item in container["env"]}
        volumes = {v["name"]: v for v in doc["spec"]["template"]["spec"]["volumes"]}
        if process not in KAFKA_RIGHTS:  # celery, and the migrate Job (KafkaTopics own the topics)
            assert "KAFKA_SASL_PASSWORD" not in env and "kafka-ca" not in volumes, process
            continue
        assert env["KAFKA_SASL_USERNAME"]["value"] == full(process)
        assert secret_refs(container)["KAFKA_SASL_PASSWORD"] == (full(process), "password")
        assert volumes["kafka-ca"]["secret"]["secretName"] == f"{kafka['metadata']['name']}-cluster-ca-cert"
        mount = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}["kafka-ca"]
        assert config["KAFKA_SSL_CA_LOCATION"] == f"{mount}/ca.crt"


# Which of the Secret's keys each process may read: the LLM key only the web process, the mail
# password only the celery worker (which sends the e-mails), Redis only its users.
SECRETS_OF = {
    "web": {"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "LLM_API_KEY"},
    "relay": {"SECRET_KEY", "DATABASE_URL"},
    "audit": {"SECRET_KEY", "DATABASE_URL"},
    "recurrence": {"SECRET_KEY", "DATABASE_URL"},
    "scheduler": {"SECRET_KEY", "DATABASE_URL"},
    "notifications": {"SECRET_KEY", "DATABASE_URL", "REDIS_URL"},
    "realtime": {"SECRET_KEY", "DATABASE_URL", "REDIS_URL"},
    "celery-worker": {"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "EMAIL_HOST_PASSWORD"},
    "celery-beat": {"SECRET_KEY", "DATABASE_URL", "REDIS_URL"},
    "migrate": {"SECRET_KEY", "DATABASE_URL"},
}


@pytest.mark.parametrize("profile", ["default", "redpanda-cloud", "dapr"])
def test_every_process_gets_only_the_secrets_it_uses(rendered, profile):
    documents = rendered[profile]
    secret_name = "todo-secrets" if profile == "redpanda-cloud" else full("secrets")
    shared_sasl = profile == "redpanda-cloud"
    for doc, container in containers(documents):
        process = doc["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
        assert container["envFrom"] == [{"configMapRef": {"name": full("config")}}], process
        from_secret = {var for var, (name, _) in secret_refs(container).items() if name == secret_name}
        kafka = {"KAFKA_SASL_PASSWORD"} if shared_sasl and (process in KAFKA_RIGHTS or process == "migrate") else set()
        assert from_secret == SECRETS_OF[process] | kafka, process


def test_redis_needs_a_password_that_redis_url_carries_and_upgrades_keep(rendered):
    secret = by_name(rendered["default"], "Secret")[full("secrets")]["stringData"]
    assert len(secret["REDIS_PASSWORD"]) >= 32
    assert secret["REDIS_URL"] == f"redis://:{secret['REDIS_PASSWORD']}@redis:6379/0"
    assert "REDIS_URL" not in by_name(rendered["default"], "ConfigMap")[full("config")]["data"]


def selects(selector, labels):
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        value = labels.get(expression["key"])
        if (expression["operator"] == "In") != (value in expression["values"]):
            return False
    return True


def test_network_policies_admit_the_ingress_only_to_web_and_postgres_and_redis_only_to_their_users(rendered):
    documents = rendered["default"]
    policies = by_name(documents, "NetworkPolicy")
    pods = {d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]: d["spec"]["template"]["metadata"]["labels"]
            for d in [*of_kind(documents, "Deployment"), *of_kind(documents, "Job")]}
    # Every pod of the release is covered by exactly one ingress policy; only web's admits the Ingress controller.
    controller = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    for process, labels in pods.items():
        (policy,) = [p for p in policies.values() if selects(p["spec"]["podSelector"], labels)]
        peers = [peer for rule in policy["spec"]["ingress"] for peer in rule["from"]]
        assert (controller in peers) == (process == "web"), process
    for service, users in (("postgresql", set(SECRETS_OF)), ("redis", {p for p, keys in SECRETS_OF.items() if "REDIS_URL" in keys})):
        policy = policies[full(service)]["spec"]
        assert policy["policyTypes"] == ["Ingress"]
        (rule,) = policy["ingress"]
        admitted = {process for process, labels in pods.items() if any(selects(peer["podSelector"], labels) for peer in rule["from"])}
        assert admitted == users & set(pods), service


def ingress_admits(paths, path):
    """Kubernetes Ingress path matching: Exact, or Prefix by whole path elements."""
    for rule in paths:
        if rule["pathType"] == "Exact" and path == rule["path"]:
            return True
        if rule["pathType"] == "Prefix":
            prefix = [e for e in rule["path"].split("/") if e]
            if [e for e in path.split("/") if e][: len(prefix)] == prefix:
                return True
    return False


def public_routes():
    """Every route the web process serves, first path element and all, from the URLconf, the
    WebSocket routing and the MCP mount: a new route shows up here without anyone listing it."""
    from django.urls import URLPattern, URLResolver, get_resolver

    from todo_project.asgi import MCP_PATHS
    from todo_project.routing import websocket_urlpatterns

    def walk(patterns, prefix=""):
        for pattern in patterns:
            route = prefix + str(pattern.pattern).lstrip("^").rstrip("$")
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern):
                yield "/" + re.sub(r"<[^>]+>|\(.*?\)", "x", route)

    return {*walk(get_resolver().url_patterns), *walk(websocket_urlpatterns), *MCP_PATHS}


# Served by the web process but never by the Ingress: probes and metrics are in-cluster only,
# /dapr/ exists only on the delivery pods.
PRIVATE_ROUTES = ("/healthz", "/readyz", "/metrics", "/dapr/")


def test_the_ingress_routes_every_public_path_of_the_urlconf_and_none_of_the_private_ones(rendered):
    (ingress,) = of_kind(rendered["default"], "Ingress")
    paths = ingress["spec"]["rules"][0]["http"]["paths"]
    routes = public_routes()
    private = {route for route in routes if route.startswith(PRIVATE_ROUTES)}
    assert {"/healthz", "/readyz", "/metrics"} <= private
    assert [route for route in sorted(routes - private) if not ingress_admits(paths, route)] == []
    assert [route for route in sorted(private) if ingress_admits(paths, route)] == []
    for probe in ("/dapr/events/audit", "/dapr/subscribe", "/metrics", "/readyz", "/healthz"):
        assert not ingress_admits(paths, probe), probe


# --- Dapr ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("profile", ["dapr", "redpanda-cloud+dapr+keda"])
def test_dapr_gives_each_consumer_service_its_own_group_and_a_dead_letter_topic(rendered, profile):
    documents = rendered[profile]
    prefix = "prod." if "redpanda-cloud" in profile else ""
    components = by_name(documents, "Component")
    subscriptions = of_kind(documents, "Subscription")
    deployments = by_name(documents, "Deployment")
    delivered = {}
    for subscription in subscriptions:
        assert subscription["apiVersion"] == "dapr.io/v2alpha1"
        spec = subscription["spec"]
        assert spec["deadLetterTopic"] == spec["topic"] + ".dlq"
        assert spec["metadata"]["rawPayload"] == "true"
        component = components[spec["pubsubname"]]
        metadata = {item["name"]: item for item in component["spec"]["metadata"]}
        (app_id,) = subscription["scopes"]
        assert component["scopes"] == [app_id]
        delivered[spec["topic"]] = delivered.get(spec["topic"], []) + [metadata["consumerGroup"]["value"]]
        # Dapr delivers to a pod of that app-id, which runs the web process.
        (deployment,) = [
            d for d in deployments.values()
            if d["spec"]["template"]["metadata"]["annotations"].get("dapr.io/app-id") == app_id
        ]
        assert deployment["spec"]["template"]["metadata"]["annotations"]["dapr.io/app-port"] == "8000"
    expected = {}
    for name, (topic, group) in CONSUMER_GROUPS.items():
        if name in DELIVERED_CONSUMERS:
            expected.setdefault(prefix + topic, []).append(prefix + group)
    assert {topic: sorted(groups) for topic, groups in delivered.items()} == {
        topic: sorted(groups) for topic, groups in expected.items()
    }


@pytest.mark.parametrize("profile", ["dapr", "redpanda-cloud+dapr+keda"])
def test_dapr_components_speak_kafka_4_and_take_sasl_from_the_secret(rendered, profile):
    documents = rendered[profile]
    for component in of_kind(documents, "Component"):
        assert component["spec"]["type"] == "pubsub.kafka"
        metadata = {item["name"]: item for item in component["spec"]["metadata"]}
        assert metadata["version"]["value"].startswith("4.")
        if profile == "dapr":  # on the chart's Strimzi cluster: each component its process's KafkaUser
            assert metadata["authType"]["value"] == "password"
            assert metadata["saslMechanism"]["value"] == "SHA-512"
            user = metadata["saslUsername"]["value"]
            assert user in by_name(documents, "KafkaUser")
            assert metadata["saslPassword"]["secretKeyRef"] == {"name": user, "key": "password"}
            assert metadata["caCert"]["secretKeyRef"]["key"] == "ca.crt"
        else:
            assert metadata["authType"]["value"] == "password"
            assert metadata["saslMechanism"]["value"] == "SHA-256"
            assert metadata["saslPassword"]["secretKeyRef"] == {"name": "todo-secrets", "key": "KAFKA_SASL_PASSWORD"}
            assert metadata["disableTls"]["value"] == "false"
    (resiliency,) = of_kind(documents, "Resiliency")
    targets = resiliency["spec"]["targets"]["components"]
    assert set(targets) == set(by_name(documents, "Component"))
    config = by_name(documents, "ConfigMap")[full("config")]["data"]
    assert config["EVENT_TRANSPORT"] == "dapr"
    assert targets[config["DAPR_PUBSUB_NAME"]]["outbound"]["retry"] in resiliency["spec"]["policies"]["retries"]


@pytest.mark.parametrize("profile", ["dapr", "redpanda-cloud+dapr+keda"])
def test_dapr_delivers_to_the_apps_routes_and_the_app_dead_letters_through_its_own_component(rendered, profile):
    documents = rendered[profile]
    deployments = by_name(documents, "Deployment")
    resiliency = of_kind(documents, "Resiliency")[0]["spec"]
    config = by_name(documents, "ConfigMap")[full("config")]["data"]
    # Subscriptions are declarative: the app's programmatic document stays empty.
    assert config["DAPR_PROGRAMMATIC_SUBSCRIPTIONS"] == "false"
    routes = set()
    for subscription in of_kind(documents, "Subscription"):
        spec = subscription["spec"]
        routes.add(spec["routes"]["default"])
        (app_id,) = subscription["scopes"]
        (deployment,) = [
            d for d in deployments.values()
            if d["spec"]["template"]["metadata"]["annotations"].get("dapr.io/app-id") == app_id
        ]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env = {item["name"]: item for item in container.get("env", [])}
        assert env["DAPR_PUBSUB_NAME"]["value"] == spec["pubsubname"]
        retry = resiliency["targets"]["components"][spec["pubsubname"]]["outbound"]["retry"]
        assert retry in resiliency["policies"]["retries"]
    assert routes == {f"/dapr/events/{name}" for name in dapr_consumers()}


def delivery_deployments(documents):
    return [
        d for d in of_kind(documents, "Deployment")
        if "dapr.io/app-port" in d["spec"]["template"]["metadata"]["annotations"]
    ]


@pytest.mark.parametrize("token_values", [[], ["--set", "dapr.appTokenSecret=my-token"]], ids=["generated", "given"])
def test_dapr_delivery_pods_run_the_delivery_app_of_their_consumer_with_the_sidecars_token(helm, token_values):
    documents = render(helm, "dapr", *token_values)
    token_secret = "my-token" if token_values else full("dapr-app-token")
    generated = by_name(documents, "Secret").get(full("dapr-app-token"))
    if token_values:
        assert generated is None
    else:
        assert len(generated["data"]["token"]) >= 48  # random, base64; `lookup` keeps it on upgrades
    delivered = delivery_deployments(documents)
    assert len(delivered) == len(dapr_consumers()) == 4
    for deployment in delivered:
        consumer = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["dapr.io/app-token-secret"] == token_secret
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["command"][:2] == ["uvicorn", "todo_project.delivery_asgi:application"]
        env = {item["name"]: item for item in container["env"]}
        assert env["DAPR_APP_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": token_secret, "key": "token"}
        assert env["DAPR_CONSUMERS"]["value"] == consumer


def test_without_dapr_no_pod_gets_a_sidecar(rendered):
    for doc, _ in containers(rendered["default"]):
        assert "dapr.io/enabled" not in doc["spec"]["template"]["metadata"].get("annotations", {})
    assert by_name(rendered["default"], "ConfigMap")[full("config")]["data"]["EVENT_TRANSPORT"] == "kafka"


# --- KEDA ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("profile", ["keda", "redpanda-cloud+dapr+keda"])
def test_keda_scales_each_consumer_on_its_own_lag_up_to_the_partition_count(rendered, profile):
    documents = rendered[profile]
    prefix = "prod." if "redpanda-cloud" in profile else ""
    deployments = by_name(documents, "Deployment")
    scaled = by_name(documents, "ScaledObject")
    consumers = {name: topic_group for name, topic_group in CONSUMER_GROUPS.items() if name in DELIVERED_CONSUMERS}
    assert set(scaled) == {full(name) for name in consumers}
    assert deployments[full("scheduler")]["spec"]["replicas"] == 1
    for name, (topic, group) in consumers.items():
        spec = scaled[full(name)]["spec"]
        target = deployments[spec["scaleTargetRef"]["name"]]
        assert "replicas" not in target["spec"], "KEDA owns the replica count"
        assert spec["maxReplicaCount"] == 3
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "kafka"
        assert trigger["metadata"]["consumerGroup"] == prefix + group
        assert trigger["metadata"]["topic"] == prefix + topic
        assert int(trigger["metadata"]["lagThreshold"]) > 0
    if prefix:
        (auth,) = of_kind(documents, "TriggerAuthentication")
        assert auth["spec"]["secretTargetRef"] == [
            {"parameter": "password", "name": "todo-secrets", "key": "KAFKA_SASL_PASSWORD"}
        ]


# --- Dockerfile (it cannot be built here: no container engine; these are its structural promises) --

def dockerfile_stages():
    text = (ROOT / "Dockerfile").read_text()
    return re.split(r"^FROM\s", text, flags=re.MULTILINE)[1:]


def test_dockerfile_builds_in_one_stage_and_runs_non_root_in_another():
    stages = dockerfile_stages()
    assert len(stages) >= 2
    runtime = stages[-1]
    users = re.findall(r"^USER\s+(\S+)", runtime, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert re.search(r"^COPY --from=\S+ /opt/venv /opt/venv", runtime, re.MULTILINE)
    assert "collectstatic" in runtime
    assert "requirements/runtime.txt" in stages[0]


def test_dockerignore_keeps_local_state_out_of_the_image():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".cache", ".env"} <= ignored

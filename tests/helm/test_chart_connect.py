"""The chart's OUTBOX_PUBLISHER=debezium option (templates/kafka-connect.yaml): a Strimzi KafkaConnect
and KafkaConnector whose settings are files/debezium-outbox.yaml's, the ones the local worker uses,
validated against the Strimzi CRDs in ../shared/crds like every other document (test_chart.py)."""

import subprocess

import pytest

from events.debezium import connector_config, shared_config
from tests.helm.test_chart import CHART, KUBERNETES_VERSION, NAMESPACE, RELEASE, by_name, full, of_kind, validate_document

pytestmark = pytest.mark.timeout(1200)

PROFILE = CHART / "ci" / "debezium-values.yaml"
CONNECT = full("connect")


def template(helm, *args):
    result = subprocess.run(
        [helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", KUBERNETES_VERSION, *args],
        capture_output=True, text=True, timeout=120,
    )
    return result


def documents(helm, *args):
    import yaml

    result = template(helm, *args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def debezium(helm):
    return documents(helm, "-f", str(PROFILE))


def test_the_debezium_profile_lints_and_every_document_validates_against_its_schema(helm, debezium):
    lint = subprocess.run([helm, "lint", "--strict", "--quiet", str(CHART), "-f", str(PROFILE)],
                          capture_output=True, text=True, timeout=120)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    for doc in debezium:
        validate_document(doc)
    assert {doc["kind"] for doc in debezium} >= {"KafkaConnect", "KafkaConnector"}


def test_it_is_off_by_default_and_the_relay_publishes(helm):
    default = documents(helm)
    assert not of_kind(default, "KafkaConnect") and not of_kind(default, "KafkaConnector")
    assert by_name(default, "ConfigMap")[full("config")]["data"]["OUTBOX_PUBLISHER"] == "relay"


def test_with_it_the_relay_is_told_that_debezium_publishes(debezium):
    config = by_name(debezium, "ConfigMap")[full("config")]["data"]
    assert (config["OUTBOX_PUBLISHER"], config["DEBEZIUM_SLOT_NAME"]) == ("debezium", "todo_outbox")


def test_the_connector_and_the_worker_take_the_settings_of_the_local_path(debezium, settings):
    (connector,) = of_kind(debezium, "KafkaConnector")
    (connect,) = of_kind(debezium, "KafkaConnect")
    shared = shared_config()
    assert connector["metadata"]["labels"]["strimzi.io/cluster"] == connect["metadata"]["name"] == CONNECT
    assert connector["spec"]["class"] == shared["connector"]["connector.class"]
    assert connector["spec"]["tasksMax"] == int(shared["connector"]["tasks.max"])
    config = connector["spec"]["config"]
    # Everything but the deployment's addresses, credentials and names is the shared file's, as locally.
    settings.KAFKA_TOPIC_PREFIX = ""
    local = connector_config()
    deployment = {"database.hostname", "database.port", "database.dbname", "database.user", "database.password"}
    assert {k: v for k, v in config.items() if k not in deployment} == {
        k: v for k, v in local.items() if k not in deployment | {"connector.class", "tasks.max"}
    }
    assert config["database.password"] == "${strimzienv:DEBEZIUM_DATABASE_PASSWORD}"
    assert shared["worker"].items() <= connect["spec"]["config"].items()
    assert connect["spec"]["config"]["producer.partitioner.class"] == "todo.connect.Fnv1aPartitioner"


def test_the_image_is_built_with_debezium_and_the_partitioner_in_one_plugin(debezium):
    (connect,) = of_kind(debezium, "KafkaConnect")
    (plugin,) = connect["spec"]["build"]["plugins"]
    maven, jar = plugin["artifacts"]
    assert (maven["type"], maven["group"], maven["artifact"], maven["version"]) == (
        "maven", "io.debezium", "debezium-connector-postgres", "3.6.1.Final")
    assert jar["type"] == "jar" and jar["url"].endswith(".jar") and jar["sha512sum"]


def test_connect_may_reach_the_brokers_and_do_only_its_work_there(debezium):
    (kafka,) = of_kind(debezium, "Kafka")
    peers = kafka["spec"]["kafka"]["listeners"][0]["networkPolicyPeers"]
    assert {"podSelector": {"matchLabels": {"strimzi.io/cluster": CONNECT, "strimzi.io/kind": "KafkaConnect"}}} in peers
    user = by_name(debezium, "KafkaUser")[full("connect")]
    acls = {(acl["resource"]["type"], acl["resource"].get("name"), acl["resource"].get("patternType")):
            set(acl["operations"]) for acl in user["spec"]["authorization"]["acls"]}
    assert acls[("topic", "todo-connect.", "prefix")] >= {"Create", "Read", "Write"}
    for topic in ("task-events", "reminders", "task-updates"):
        assert acls[("topic", topic, "literal")] == {"Write", "Describe"}
    assert acls[("group", "todo-connect", "literal")] == {"Read"}
    assert not any(name and name.endswith(".dlq") for _, name, _ in acls)  # it publishes events, never dead letters


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("kafkaConnect.build.partitionerJar.url=", "kafkaConnect: set image"),
        ("kafkaConnect.database.passwordSecret.name=", "passwordSecret.name"),
        ("kafka.provider=external", "needs kafka.provider=strimzi"),
    ],
)
def test_values_that_cannot_work_are_refused(helm, setting, complaint):
    result = template(helm, "-f", str(PROFILE), "--set", setting, "--set", "kafka.bootstrapServers=kafka:9092")
    assert result.returncode != 0 and complaint in result.stderr, result.stderr

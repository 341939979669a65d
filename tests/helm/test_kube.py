"""The chart on a real kube-apiserver (kine over SQLite, scripts/kube.sh): every values profile installed,
upgraded with changed values, rolled back and uninstalled, the server's objects checked against the
release after each step (infra/kube/lifecycle.py, also `make kube`). The server validates: built-in kinds
by its API types and admission, Strimzi, Dapr and KEDA resources by their real CRDs. No controller runs:
hook Jobs are marked complete through their status subresource (their pods never run)."""

import uuid

import pytest

from infra.kube.lifecycle import UPGRADE_CHANGES, Helm, compare, profiles, run_profile

# A cold build of kube-apiserver and kine takes ~20 minutes on two busy cores (make test builds them first).
pytestmark = pytest.mark.timeout(2400)


@pytest.fixture
def namespace(kube_apiserver):
    name = f"check-{uuid.uuid4().hex[:8]}"
    response = kube_apiserver.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    assert response.status_code == 201, response.text
    return name


def test_the_server_validates_custom_resources_by_their_crd_and_built_in_kinds_by_their_type(
    kube_apiserver, namespace
):
    topic = {
        "apiVersion": "kafka.strimzi.io/v1", "kind": "KafkaTopic",
        "metadata": {"name": "orders", "labels": {"strimzi.io/cluster": "kafka"}},
        "spec": {"topicName": "orders", "partitions": 3, "replicas": 1},
    }
    assert kube_apiserver.create(topic, namespace).status_code == 201
    wrong = {**topic, "metadata": {**topic["metadata"], "name": "wrong"}, "spec": {**topic["spec"], "partitions": "3"}}
    response = kube_apiserver.create(wrong, namespace)
    assert response.status_code == 422 and "spec.partitions" in response.json()["message"], response.text
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "b"}, "dta": {"x": "y"}}
    response = kube_apiserver.create(config_map, namespace, fieldValidation="Strict")
    assert response.status_code == 400 and 'unknown field "dta"' in response.json()["message"], response.text
    # Without strict validation (as helm creates objects) the server drops the field and says so in a
    # Warning header; the lifecycle's comparison of rendered and stored objects catches the loss.
    response = kube_apiserver.create(config_map, namespace)
    assert response.status_code == 201 and r'unknown field \"dta\"' in response.headers["warning"]
    assert compare(kube_apiserver, namespace, [config_map]) == ["ConfigMap/c/dta: rendered {'x': 'y'}, not stored"]


@pytest.mark.parametrize("profile", profiles())
def test_each_values_profile_installs_upgrades_rolls_back_and_uninstalls(kube_apiserver, tmp_path, profile):
    helm = Helm(kube_apiserver, tmp_path / "helm")
    run = run_profile(kube_apiserver, helm, profile, profiles()[profile], namespace=f"todo-{profile}")
    assert {name: step.problems for name, step in run.steps.items()} == {
        "install": [], "upgrade": [], "rollback": [], "uninstall": [],
    }
    # The migrate Job ran as a hook of the install and of the upgrade (not of the rollback), and helm
    # deleted it each time once complete (checked by check_revision).
    assert run.hooks_completed == ["todo-todo-platform-migrate"] * 2
    assert run.objects >= 20
    # helm leaves hook resources on uninstall: the ConfigMap, the ServiceAccount, the chart's Secrets.
    assert "ConfigMap/todo-todo-platform-config" in run.left_after_uninstall
    assert all(name.split("/")[0] in {"ConfigMap", "Secret", "ServiceAccount"} for name in run.left_after_uninstall)


def test_the_upgrade_changes_what_the_checks_look_at():
    """The lifecycle's upgrade must change each value it checks: otherwise upgrade and rollback prove nothing."""
    assert all(before != after for *_, before, after in UPGRADE_CHANGES)

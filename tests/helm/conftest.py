"""Fixtures of the chart's tests: a real Kubernetes API server (helm is shared: tests/fixtures.py), and
the Kubernetes schemas read once per run."""

import subprocess
from functools import cache
from pathlib import Path

import kubernetes_validate.utils
import pytest

from infra.kube.lifecycle import ApiServer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def kube_apiserver(tmp_path_factory, helm):
    """A kube-apiserver on kine of its own (scripts/kube.sh up; the binaries come from `make kube-tools`, a
    step of `make test`, or are built here), with the CRDs of infra/kube/crds installed. No controller runs."""
    folder = tmp_path_factory.mktemp("kube")
    script = str(ROOT / "scripts" / "kube.sh")
    result = subprocess.run(["bash", script, "up", str(folder)], capture_output=True, text=True, timeout=2400)
    try:
        assert result.returncode == 0, f"starting kube-apiserver failed:\n{result.stdout}\n{result.stderr}"
        api = ApiServer(folder / "kubeconfig")
        api.install_crds()
        yield api
    finally:
        subprocess.run(["bash", script, "down", str(folder)], timeout=60)


@pytest.fixture(scope="session", autouse=True)
def kubernetes_schemas_read_once():
    """kubernetes_validate reads and parses its schema files on every validate() call (the shared
    definitions are 1.8 MB of JSON: ~15 ms a document, seconds for the documents of every profile).
    They do not change during a run and validating does not modify them: each is parsed once."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kubernetes_validate.utils, "schema_contents", cache(kubernetes_validate.utils.schema_contents))
        yield

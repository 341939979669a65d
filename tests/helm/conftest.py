"""Fixtures of the chart's tests: a real Kubernetes API server (helm is shared: tests/fixtures.py)."""

import subprocess
from pathlib import Path

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

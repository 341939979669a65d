"""The chart's whole life on a real Kubernetes API server: for every values profile, helm install, upgrade
with changed values, rollback and uninstall, and after each step a comparison of what the server stores
with what the release rendered.

The server (kine + kube-apiserver, started by ``scripts/kube.sh up``) validates every object itself:
built-in kinds by its own API types and admission, Strimzi, Dapr and KEDA resources by the openAPIV3Schema
of their real CRDs (infra/kube/crds/). It runs no controller: nothing is scheduled, no pod runs. The
chart's migrate Job is a pre-install/pre-upgrade hook that helm waits for; here ``HookJobCompleter``
marks each hook Job complete through the status subresource, as the Job controller would once its pod
exited 0, and says so in the transcript. Its pod never ran: what this proves is that helm's hook
sequence goes through on a real server (the hook resources are created in order, the Job is deleted on
success), not that migrations pass.

Run by ``make kube`` (scripts/kube.sh run) and by tests/helm/test_kube.py.
"""

import argparse
import base64
import copy
import json
import os
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "todo-platform"
CRD_DIR = Path(__file__).resolve().parent / "crds"
HELM = ROOT / ".cache" / "bin" / "helm"
RELEASE = "todo"
# What the upgrade changes, and where each change must show in the server: (kind, component, path, value
# before, value after). The relay is never scaled by KEDA, so its replica count is the chart's in every
# profile; LOG_LEVEL lands in the ConfigMap, a hook resource (see todo.configHookAnnotations).
UPGRADE_VALUES = ["--set", "workers.relay.replicas=2", "--set", "config.LOG_LEVEL=DEBUG"]
UPGRADE_CHANGES = [
    ("Deployment", "relay", ("spec", "replicas"), 1, 2),
    ("ConfigMap", "config", ("data", "LOG_LEVEL"), "INFO", "DEBUG"),
]
HOOK_TIMEOUT = "120s"


def profiles():
    """Profile name -> its values files: the chart's defaults, and each ci/<name>-values.yaml."""
    found = {"default": []}
    for path in sorted((CHART / "ci").glob("*-values.yaml")):
        found[path.name.removesuffix("-values.yaml")] = [path]
    return found


# --- the API server --------------------------------------------------------------------------------

class ApiServer:
    """A client of the server named by a kubeconfig of scripts/kube.sh: bearer token, the server's CA."""

    def __init__(self, kubeconfig):
        self.kubeconfig = Path(kubeconfig)
        config = yaml.safe_load(self.kubeconfig.read_text())
        cluster = config["clusters"][0]["cluster"]
        self.url = cluster["server"]
        self.ca = cluster["certificate-authority"]
        self.token = config["users"][0]["user"]["token"]
        self.http = httpx.Client(
            base_url=self.url, verify=ssl.create_default_context(cafile=self.ca),
            headers={"Authorization": f"Bearer {self.token}"}, timeout=30,
        )
        self._resources = {}

    def resource(self, api_version, kind):
        """(plural name, namespaced) of a kind, from the server's discovery document."""
        if api_version not in self._resources:
            path = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
            response = self.http.get(path)
            response.raise_for_status()
            self._resources[api_version] = {
                item["kind"]: (item["name"], item["namespaced"])
                for item in response.json()["resources"] if "/" not in item["name"]
            }
        return self._resources[api_version][kind]

    def path(self, api_version, kind, namespace, name=""):
        plural, namespaced = self.resource(api_version, kind)
        base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        scope = f"/namespaces/{namespace}" if namespaced else ""
        return f"{base}{scope}/{plural}" + (f"/{name}" if name else "")

    def get(self, api_version, kind, namespace, name):
        """The stored object, or None if the server has none of that name."""
        response = self.http.get(self.path(api_version, kind, namespace, name))
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    def names(self, api_version, kind, namespace, label_selector):
        response = self.http.get(self.path(api_version, kind, namespace), params={"labelSelector": label_selector})
        response.raise_for_status()
        return {item["metadata"]["name"] for item in response.json()["items"]}

    def create(self, document, namespace="", **params):
        api_version, kind = document["apiVersion"], document["kind"]
        return self.http.post(self.path(api_version, kind, namespace), json=document, params=params)

    def install_crds(self, crd_dir=CRD_DIR):
        """Creates every CRD of crd_dir and waits until the server serves them; returns their names."""
        names = []
        for path in sorted(crd_dir.glob("*.yaml")):
            for crd in yaml.safe_load_all(path.read_text()):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                # Dapr's Subscription CRD converts v1alpha1 <-> v2alpha1 through a webhook of the Dapr
                # operator, which does not run here: without it the server would call the absent
                # webhook on every read. Both versions share one schema, so dropping conversion
                # (strategy None) changes no validation of the chart's v2alpha1 documents.
                crd["spec"].pop("conversion", None)
                response = self.create(crd)
                if response.status_code != 409:  # already there: a server reused by another run
                    response.raise_for_status()
                names.append(crd["metadata"]["name"])
        for name in names:
            self.wait_established(name)
        return names

    def wait_established(self, name, timeout=60):
        """Polls the CRD until its Established condition is True (within a second on this server)."""
        deadline = time.monotonic() + timeout
        path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
        while True:
            crd = self.http.get(path).json()
            conditions = {c["type"]: c["status"] for c in crd.get("status", {}).get("conditions", [])}
            if conditions.get("Established") == "True":
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {name} not established after {timeout} s: {conditions}")
            time.sleep(0.1)


class HookJobCompleter:
    """Stands in for the Job controller, which does not run here: each Job that helm creates as a hook in
    the namespace is marked complete through its status subresource (startTime, completionTime,
    succeeded=1 and the SuccessCriteriaMet and Complete conditions, as the controller writes them when the
    pod exits 0). The Job's pod never runs. Every Job it completes is listed in ``completed``."""

    def __init__(self, api, namespace):
        self.api = api
        self.namespace = namespace
        self.completed = []
        self.errors = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"hook-jobs-{namespace}", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)

    def _run(self):
        path = f"/apis/batch/v1/namespaces/{self.namespace}/jobs"
        while not self._stop.is_set():
            try:
                # A fresh watch starts with an ADDED event per existing Job; it ends after a second,
                # so that the loop notices _stop.
                with self.api.http.stream("GET", path, params={"watch": "true", "timeoutSeconds": "1"}) as response:
                    for line in response.iter_lines():
                        if line:
                            event = json.loads(line)
                            if event["type"] in {"ADDED", "MODIFIED"}:
                                self._complete(event["object"])
            except httpx.HTTPError as error:
                self.errors.append(repr(error))
                self._stop.wait(0.5)

    def _complete(self, job):
        name = job["metadata"]["name"]
        conditions = {c["type"] for c in job.get("status", {}).get("conditions", [])}
        if "Complete" in conditions or "helm.sh/hook" not in job["metadata"].get("annotations", {}):
            return
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        condition = {"status": "True", "lastProbeTime": now, "lastTransitionTime": now}
        status = {
            "startTime": now, "completionTime": now, "succeeded": 1, "active": 0, "ready": 0,
            "uncountedTerminatedPods": {},
            "conditions": [{**condition, "type": "SuccessCriteriaMet", "reason": "CompletionsReached"},
                           {**condition, "type": "Complete", "reason": "CompletionsReached"}],
        }
        response = self.api.http.patch(
            f"/apis/batch/v1/namespaces/{self.namespace}/jobs/{name}/status",
            json={"status": status}, headers={"Content-Type": "application/merge-patch+json"},
        )
        if response.is_success:
            self.completed.append(name)
            print(f"  !! no Job controller here: marked hook Job {self.namespace}/{name} complete through its "
                  "status subresource (its pod never ran)", flush=True)
        else:
            self.errors.append(f"completing Job {name}: {response.status_code} {response.text}")


# --- comparing the release with the server -----------------------------------------------------------

def documents(text):
    return [doc for doc in yaml.safe_load_all(text) if doc]


def as_stored(rendered):
    """What the server stores for a rendered document: stringData is write-only, kept as base64 data."""
    doc = copy.deepcopy(rendered)
    if doc["kind"] == "Secret" and "stringData" in doc:
        data = doc.setdefault("data", {})
        for key, value in doc.pop("stringData").items():
            data[key] = base64.b64encode(str(value).encode()).decode()
    return doc


def differences(rendered, stored, where=""):
    """Every value of the rendered document that the stored object does not carry unchanged (the server may
    add defaults, never drop or change a rendered field: a pruned field of a CRD shows up here)."""
    if isinstance(rendered, dict):
        if not isinstance(stored, dict):
            return [f"{where or '/'}: rendered a mapping, stored {stored!r}"]
        found = []
        for key, value in rendered.items():
            if key not in stored:
                if value not in (None, {}, []):  # an empty field is not stored
                    found.append(f"{where}/{key}: rendered {value!r}, not stored")
            else:
                found += differences(value, stored[key], f"{where}/{key}")
        return found
    if isinstance(rendered, list):
        if not isinstance(stored, list) or len(stored) != len(rendered):
            return [f"{where}: rendered {rendered!r}, stored {stored!r}"]
        return [d for i, (r, s) in enumerate(zip(rendered, stored, strict=True)) for d in differences(r, s, f"{where}[{i}]")]
    return [] if rendered == stored else [f"{where}: rendered {rendered!r}, stored {stored!r}"]


def identity(doc):
    return doc["apiVersion"], doc["kind"], doc["metadata"]["name"]


def compare(api, namespace, expected):
    """Problems between the rendered documents and the server: a missing or altered object, or an object of
    the release's labels that the release does not contain (a leftover of an earlier revision)."""
    problems = []
    for doc in expected:
        stored = api.get(doc["apiVersion"], doc["kind"], namespace, doc["metadata"]["name"])
        name = "{1}/{2}".format(*identity(doc))
        if stored is None:
            problems.append(f"{name}: rendered, not in the server")
            continue
        rendered = as_stored(doc)
        rendered.pop("status", None)
        problems += [f"{name}{d}" for d in differences(rendered, stored)]
    for api_version, kind in sorted({identity(doc)[:2] for doc in expected}):
        stored = api.names(api_version, kind, namespace, f"app.kubernetes.io/instance={RELEASE}")
        rendered = {identity(doc)[2] for doc in expected if identity(doc)[:2] == (api_version, kind)}
        problems += [f"{kind}/{name}: in the server, not in this revision" for name in sorted(stored - rendered)]
    return problems


# --- one profile --------------------------------------------------------------------------------------

@dataclass
class Step:
    name: str
    problems: list = field(default_factory=list)

    @property
    def ok(self):
        return not self.problems


@dataclass
class ProfileRun:
    profile: str
    namespace: str
    steps: dict = field(default_factory=dict)
    objects: int = 0
    hooks_completed: list = field(default_factory=list)
    left_after_uninstall: list = field(default_factory=list)

    @property
    def ok(self):
        return len(self.steps) == 4 and all(step.ok for step in self.steps.values())


class Helm:
    """helm against the server, with its own config, cache and data folders (nothing of ~/.config)."""

    def __init__(self, api, home):
        self.api = api
        home = Path(home)
        self.env = {**os.environ, "HELM_CONFIG_HOME": str(home / "config"), "HELM_CACHE_HOME": str(home / "cache"),
                    "HELM_DATA_HOME": str(home / "data"), "KUBECONFIG": str(api.kubeconfig)}

    def __call__(self, *args):
        """(succeeded, output): a failure or any warning of the server (deprecated API, unknown field)
        counts against the step."""
        result = subprocess.run([str(HELM), *args], capture_output=True, text=True, env=self.env, timeout=600)
        warnings = [line for line in result.stderr.splitlines() if "warning" in line.lower()]
        problems = [] if result.returncode == 0 else [f"helm {args[0]} failed: {result.stderr.strip()}"]
        return problems + [f"helm {args[0]}: {line}" for line in warnings], result.stdout

    def release_documents(self, namespace, what, revision=None):
        """helm get manifest|hooks: what the release rendered (of that revision)."""
        args = ["get", what, RELEASE, "-n", namespace] + (["--revision", str(revision)] if revision else [])
        problems, output = self(*args)
        if problems:
            raise RuntimeError("; ".join(problems))
        return documents(output)


def by_component(docs, kind, component):
    (doc,) = [d for d in docs if d["kind"] == kind
              and (d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component
                   or d["metadata"]["name"].endswith(f"-{component}"))]
    return doc


def stored_value(api, namespace, doc, path):
    value = api.get(doc["apiVersion"], doc["kind"], namespace, doc["metadata"]["name"])
    for key in path:
        value = (value or {}).get(key)
    return value


def check_revision(api, helm, namespace, revision, changes_at):
    """The server against revision ``revision`` of the release: its manifest, its hook resources that
    remain (the Job is deleted once complete: hook-succeeded), the values that the upgrade changes, and
    that the chart's generated Secrets kept their data. Returns (problems, object count)."""
    manifest = helm.release_documents(namespace, "manifest", revision)
    hooks = helm.release_documents(namespace, "hooks", revision)
    kept_hooks = [doc for doc in hooks if doc["kind"] != "Job"]
    problems = compare(api, namespace, manifest + kept_hooks)
    for job in (doc for doc in hooks if doc["kind"] == "Job"):
        if api.get(job["apiVersion"], "Job", namespace, job["metadata"]["name"]) is not None:
            problems.append(f"hook Job/{job['metadata']['name']}: still there (helm deletes it once complete)")
    for kind, component, path, *values in UPGRADE_CHANGES:
        expected = values[changes_at]
        actual = stored_value(api, namespace, by_component(manifest + kept_hooks, kind, component), path)
        if actual != expected:
            problems.append(f"{kind} {component} {'.'.join(path)} = {actual!r}, expected {expected!r}")
    return problems, len(manifest) + len(kept_hooks)


def generated_secrets(api, namespace, hooks):
    return {doc["metadata"]["name"]: (api.get("v1", "Secret", namespace, doc["metadata"]["name"]) or {}).get("data")
            for doc in hooks if doc["kind"] == "Secret"}


def run_profile(api, helm, profile, values_files, namespace):
    run = ProfileRun(profile, namespace)
    values = [arg for path in values_files for arg in ("-f", str(path))]
    common = ["-n", namespace, "--timeout", HOOK_TIMEOUT]
    with HookJobCompleter(api, namespace) as completer:
        step = run.steps["install"] = Step("install")
        step.problems, _ = helm("install", RELEASE, str(CHART), *common, "--create-namespace", *values)
        if step.ok:
            problems, run.objects = check_revision(api, helm, namespace, 1, changes_at=0)
            step.problems += problems
            secrets = generated_secrets(api, namespace, helm.release_documents(namespace, "hooks", 1))

        if step.ok:
            step = run.steps["upgrade"] = Step("upgrade")
            step.problems, _ = helm("upgrade", RELEASE, str(CHART), *common, *values, *UPGRADE_VALUES)
            if step.ok:
                step.problems += check_revision(api, helm, namespace, 2, changes_at=1)[0]
                if generated_secrets(api, namespace, helm.release_documents(namespace, "hooks", 2)) != secrets:
                    step.problems.append("a generated Secret changed its data on upgrade (lookup must keep it)")

        if step.ok:
            step = run.steps["rollback"] = Step("rollback")
            step.problems, _ = helm("rollback", RELEASE, "1", *common)
            if step.ok:
                # Revision 3 is revision 1 again: its values, and the server as before the upgrade.
                step.problems += check_revision(api, helm, namespace, 3, changes_at=0)[0]
                if generated_secrets(api, namespace, helm.release_documents(namespace, "hooks", 3)) != secrets:
                    step.problems.append("a generated Secret changed its data on rollback")

        if step.ok:
            manifest = helm.release_documents(namespace, "manifest")
            hooks = helm.release_documents(namespace, "hooks")
            step = run.steps["uninstall"] = Step("uninstall")
            step.problems, _ = helm("uninstall", RELEASE, *common)
            if step.ok:
                step.problems += [
                    "{1}/{2}: still in the server after uninstall".format(*identity(doc)) for doc in manifest
                    if api.get(doc["apiVersion"], doc["kind"], namespace, doc["metadata"]["name"]) is not None
                ]
                # helm never deletes hook resources on uninstall (the chart's ConfigMap, Secrets and
                # ServiceAccount): listed, so that a change of that shows.
                run.left_after_uninstall = sorted(
                    "{1}/{2}".format(*identity(doc)) for doc in hooks
                    if api.get(doc["apiVersion"], doc["kind"], namespace, doc["metadata"]["name"]) is not None
                )
        run.hooks_completed = completer.completed
        if completer.errors:
            step.problems += [f"hook Job completer: {error}" for error in completer.errors]
    return run


# --- transcript ------------------------------------------------------------------------------------

def table(runs):
    def cell(run, name):
        step = run.steps.get(name)
        return "-" if step is None else ("yes" if step.ok else "FAILED")

    header = ["profile", "installed", "upgraded", "rolled back", "uninstalled", "objects", "hook Jobs completed",
              "left after uninstall (hooks)"]
    rows = [[run.profile, *(cell(run, name) for name in ("install", "upgrade", "rollback", "uninstall")),
             str(run.objects), str(len(run.hooks_completed)), str(len(run.left_after_uninstall))] for run in runs]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    line = lambda row: "| " + " | ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", required=True, help="the kubeconfig that `scripts/kube.sh up DIR` wrote")
    parser.add_argument("--profile", action="append", choices=sorted(profiles()), help="only these (default: all)")
    args = parser.parse_args(argv)
    api = ApiServer(args.kubeconfig)
    version = api.http.get("/version").json()["gitVersion"]
    crds = api.install_crds()
    print(f"==> kube-apiserver {version} at {api.url}: {len(crds)} CRDs installed and established "
          f"({', '.join(sorted({name.split('.', 1)[1] for name in crds}))})", flush=True)
    print("==> no controllers run on this server: objects are validated and stored, nothing is scheduled;\n"
          "    hook Jobs are marked complete through their status subresource (their pods never run)", flush=True)
    helm = Helm(api, Path(args.kubeconfig).parent / "helm")
    runs = []
    for profile, values_files in profiles().items():
        if args.profile and profile not in args.profile:
            continue
        print(f"==> {profile}: install, upgrade ({' '.join(UPGRADE_VALUES[1::2])}), rollback, uninstall", flush=True)
        run = run_profile(api, helm, profile, values_files, namespace=f"todo-{profile}")
        for step in run.steps.values():
            for problem in step.problems:
                print(f"  {step.name}: {problem}", flush=True)
        runs.append(run)
    print(table(runs))
    return 0 if all(run.ok for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())

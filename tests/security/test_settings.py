"""Production settings: what DEBUG off means, and what a proxy may tell us.

Threats: a deployment outside Kubernetes forgets SECRET_KEY and signs sessions with a public key;
cookies travel over plain http; a client forges X-Forwarded-Proto/-For to look like https or like
someone else's address. What they get: the process refuses to start without a key; with DEBUG off
cookies are HTTPS-only, HSTS is sent, plain http is redirected (except the probes, which the
kubelet sends over http); uvicorn believes forwarded headers only from FORWARDED_ALLOW_IPS; and
`manage.py check --deploy` reports nothing with the environment the Helm chart gives the web pods.
"""

import re
import subprocess
import sys

import httpx
import pytest

from tests.helm.test_chart import render
from testing.db import database_url
from testing.processes import REPO, Process, program, wait_until_serving
from testing.waits import wait_for
from todo_project.health import urlpatterns

pytestmark = pytest.mark.django_db(transaction=True)

SECRET_KEY = "a-production-secret-key-that-is-long-and-random-enough-0123456789"
# What a process sees outside the test run (no DEBUG=true from pytest-env or the Makefile).
BARE_ENVIRONMENT = {"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"}
TLS = ["--set", "ingress.tls[0].secretName=todo-tls", "--set", "ingress.tls[0].hosts[0]=todo.local"]
HTTPS_ONLY_WARNINGS = {"security.W004", "security.W008", "security.W012", "security.W016"}


def manage(args, env):
    return subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env={**BARE_ENVIRONMENT, **env},
                          capture_output=True, text=True, timeout=120)


def web_environment(documents):
    """The environment of the web Deployment's container: its ConfigMap, Secret and env entries."""
    kinds = {(doc["kind"], doc["metadata"]["name"]): doc for doc in documents}
    [web] = [doc for doc in documents if doc["kind"] == "Deployment" and doc["metadata"]["name"].endswith("-web")]
    [container] = web["spec"]["template"]["spec"]["containers"]
    env = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(kinds["ConfigMap", source["configMapRef"]["name"]]["data"])
        else:
            env.update(kinds["Secret", source["secretRef"]["name"]]["stringData"])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "secretKeyRef" in item.get("valueFrom", {}):  # each process gets only the secrets it uses
            ref = item["valueFrom"]["secretKeyRef"]
            secret = kinds.get(("Secret", ref["name"]))
            if secret is not None:  # a Secret the chart renders (not one an operator provides)
                env[item["name"]] = secret["stringData"][ref["key"]]
    return env


def warnings_of(check):
    return set(re.findall(r"\((security\.W\d+)\)", check.stderr))


# --- the secret key -------------------------------------------------------------------------------

@pytest.mark.e2e  # starts a manage.py process in its body
def test_without_a_secret_key_and_debug_off_the_process_refuses_to_start():
    result = manage(["check"], {"DEBUG": "false"})  # nor KUBERNETES_SERVICE_HOST: outside Kubernetes
    assert result.returncode != 0
    assert "SECRET_KEY is empty and DEBUG is off" in result.stderr


@pytest.mark.e2e  # starts a manage.py process in its body
def test_local_development_needs_no_configuration():
    result = manage(["check"], {"DEBUG": "true"})
    assert result.returncode == 0, result.stderr


# --- check --deploy with the chart's environment ----------------------------------------------------

@pytest.mark.e2e  # starts a manage.py process in its body
def test_check_deploy_reports_nothing_with_the_environment_the_chart_gives_the_web_pods(helm):  # noqa: F811
    env = web_environment(render(helm, "default", *TLS))
    assert env["DEBUG"] == "false" and len(env["SECRET_KEY"]) >= 50
    result = manage(["check", "--deploy", "--fail-level", "WARNING"], env)
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


@pytest.mark.e2e  # starts a manage.py process in its body
def test_an_ingress_without_tls_turns_off_exactly_the_https_only_settings(helm):  # noqa: F811
    # Secure cookies over plain http would never come back: without TLS nobody could sign in.
    env = web_environment(render(helm, "default"))
    result = manage(["check", "--deploy"], env)
    assert warnings_of(result) == HTTPS_ONLY_WARNINGS, result.stderr


# --- a real web process with DEBUG off ------------------------------------------------------------

@pytest.fixture
def production_web(free_port, tmp_path):
    """``start(FORWARDED_ALLOW_IPS=...)``: uvicorn serving the web app with DEBUG off; its base URL."""
    started = []

    def start(**env):
        environment = {**BARE_ENVIRONMENT, "DEBUG": "false", "SECRET_KEY": SECRET_KEY,
                       "DATABASE_URL": database_url(), **env}
        command = ["uvicorn", "todo_project.asgi:application", "--host", "127.0.0.1", "--port", str(free_port)]
        web = Process(program(*command), tmp_path / f"web-{len(started)}.log", environment).start()
        started.append(web)
        url = f"http://127.0.0.1:{free_port}"
        wait_until_serving(url, web)
        return url, web

    yield start
    for web in started:
        web.stop()


def test_with_debug_off_plain_http_is_redirected_to_https_except_the_probes(production_web):
    url, _ = production_web()
    response = httpx.get(f"{url}/api/tasks/", timeout=10)
    assert response.status_code == 301
    assert response.headers["location"] == f"https://127.0.0.1:{url.rsplit(':', 1)[1]}/api/tasks/"
    for probe in ("/healthz", "/readyz", "/metrics"):
        assert httpx.get(f"{url}{probe}", timeout=10).status_code == 200, probe


def test_behind_a_trusted_proxy_https_gets_hsts_and_https_only_cookies(production_web):
    url, _ = production_web()  # uvicorn's default: the proxy on 127.0.0.1 is trusted
    response = httpx.get(f"{url}/login/", headers={"x-forwarded-proto": "https"}, timeout=10)
    assert response.status_code == 200
    assert response.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains; preload"
    csrf_cookie = response.headers["set-cookie"]
    assert csrf_cookie.startswith("csrftoken=") and "Secure" in csrf_cookie


def test_a_trusted_proxy_tells_the_clients_address(production_web):
    url, web = production_web(FORWARDED_ALLOW_IPS="127.0.0.1")
    httpx.get(f"{url}/healthz", headers={"x-forwarded-for": "203.0.113.7"}, timeout=10)
    assert wait_for(lambda: '203.0.113.7:0 - "GET /healthz' in web.log(), timeout=10), web.log()


def test_forwarded_headers_from_an_untrusted_peer_are_ignored(production_web):
    url, web = production_web(FORWARDED_ALLOW_IPS="10.9.9.9")  # not us: we are a stranger to it
    response = httpx.get(f"{url}/api/tasks/", headers={"x-forwarded-proto": "https", "x-forwarded-for": "203.0.113.7"},
                         timeout=10)
    assert response.status_code == 301  # still plain http to Django
    assert wait_for(lambda: '127.0.0.1:' in web.log() and '"GET /api/tasks/' in web.log(), timeout=10), web.log()
    assert "203.0.113.7" not in web.log()


def test_every_probe_route_is_exempt_from_the_https_redirect(settings):
    for route in urlpatterns:
        assert any(re.search(pattern, str(route.pattern)) for pattern in settings.SECURE_REDIRECT_EXEMPT), route

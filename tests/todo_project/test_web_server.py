"""The web process as `make run`, the image and the chart run it: gunicorn (gunicorn.conf.py) with
several uvicorn workers behind one port, each serving REST, the MCP server and WebSockets, with
the channel layer (Redis) carrying a user's pushes to their sockets on every worker."""

import asyncio
import importlib.util
import json
import os
import re
import time
from pathlib import Path

import httpx
import pytest
import websockets

from tasks.chat.tools import TOOL_NAMES
from tasks.realtime.groups import push_to_user
from tasks.accounts.services import user_register
from tasks.accounts.tokens import issue
from testing.processes import REPO, Process, program, wait_until_serving, worker_environment

CONFIG = REPO / "gunicorn.conf.py"


def load_config(monkeypatch, **env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("web_gunicorn_config", CONFIG)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_procfile_the_image_and_the_chart_run_the_one_web_command():
    procfile = next(line for line in (REPO / "Procfile").read_text().splitlines() if line.startswith("web:"))
    dockerfile = json.loads(re.search(r"^CMD (\[.*\])$", (REPO / "Dockerfile").read_text(), re.M)[1])
    chart = (REPO / "helm/todo-platform/templates/web.yaml").read_text()
    assert "gunicorn -c gunicorn.conf.py --bind 127.0.0.1:${WEB_PORT:-8000}" in procfile
    assert dockerfile == ["gunicorn", "-c", "gunicorn.conf.py", "--bind", "0.0.0.0:8000"]
    assert '(list "gunicorn" "-c" "gunicorn.conf.py" "--bind"' in chart


def test_workers_default_to_the_usable_cores_and_follow_web_workers(monkeypatch):
    config = load_config(monkeypatch, WEB_WORKERS="")
    assert config.workers == config.usable_cores() >= 1
    assert load_config(monkeypatch, WEB_WORKERS="3").workers == 3
    with pytest.raises(SystemExit, match="WEB_WORKERS='many' is not a whole number"):
        load_config(monkeypatch, WEB_WORKERS="many")


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "50000 100000\n"}, 1),  # a 500m limit: one worker
        ({"cpu.max": "100001 100000\n"}, min(2, len(os.sched_getaffinity(0)))),  # rounded up, never above the CPUs
        ({"cpu.max": "max 100000\n"}, len(os.sched_getaffinity(0))),  # no limit
        ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),  # cgroup v1
        ({}, len(os.sched_getaffinity(0))),  # no cgroup files
    ],
)
def test_usable_cores_follow_the_containers_cpu_limit(monkeypatch, tmp_path, files, expected):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert load_config(monkeypatch).usable_cores(cgroup=tmp_path) == expected


def server_socket_owners(port, client_ports):
    """Which process holds the server side of each client connection (by the client's port)."""
    inodes = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port, remote_port = (int(address.rsplit(":", 1)[1], 16) for address in fields[1:3])
            if local_port == port and remote_port in client_ports:
                inodes[f"socket:[{fields[9]}]"] = remote_port
    owners = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                for fd in (entry / "fd").iterdir():
                    if (target := os.readlink(fd)) in inodes:
                        owners[inodes[target]] = int(entry.name)
            except OSError:
                continue
    return owners


@pytest.fixture
def gunicorn_server(transactional_db, free_port, tmp_path):
    web = Process(
        program("gunicorn", "-c", str(CONFIG), "--bind", f"127.0.0.1:{free_port}"),
        tmp_path / "gunicorn.log",
        worker_environment(WEB_WORKERS="2", DATABASE_POOL_MAX_SIZE="4"),
    ).start()
    url = f"http://127.0.0.1:{free_port}"
    try:
        wait_until_serving(url, web)
        yield url, free_port, web
    finally:
        assert web.stop(timeout=30) == 0, web.log()


def test_every_worker_serves_rest_mcp_and_the_websockets_of_a_user(gunicorn_server):
    url, port, web = gunicorn_server
    user = user_register(username="multi", password="a-long-passphrase")
    token = issue(user)
    headers = {"Authorization": f"Token {token}"}

    async def scenario():
        sockets, owners = [], {}
        try:
            # Fresh connections until two workers hold some: the kernel hands each to one of them.
            deadline = time.monotonic() + 60
            while len(set(owners.values())) < 2:
                assert time.monotonic() < deadline, f"every socket went to one worker: {owners}"
                socket = await websockets.connect(f"ws://127.0.0.1:{port}/ws/sync/", additional_headers=headers)
                sockets.append(socket)
                owners = await asyncio.to_thread(
                    server_socket_owners, port, {s.transport.get_extra_info("sockname")[1] for s in sockets}
                )
            # Each socket joined the user's group before its handshake was accepted (tasks/consumers.py).
            await asyncio.to_thread(push_to_user, user.id, {"type": "hello", "n": 1})
            return [json.loads(await asyncio.wait_for(socket.recv(), 10)) for socket in sockets], owners
        finally:
            for socket in sockets:
                await socket.close()

    received, owners = asyncio.run(scenario())
    assert received == [{"type": "hello", "n": 1}] * len(received)
    assert len(set(owners.values())) == 2

    # REST and MCP on fresh connections (new workers' lifespans ran: MCP answers, never 503).
    for number in range(8):
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            created = client.post("/api/tasks/", json={"title": f"task {number}"})
            assert created.status_code == 201, created.text
        mcp = httpx.post(
            f"{url}/mcp/",
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"},
            json={"jsonrpc": "2.0", "id": number, "method": "tools/list", "params": {}},
            timeout=30,
        )
        assert mcp.status_code == 200, mcp.text
        assert [tool["name"] for tool in mcp.json()["result"]["tools"]] == TOOL_NAMES
    assert "Booting worker" in web.log() and web.log().count("Application startup complete") == 2

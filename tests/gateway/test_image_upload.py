"""PUT /api/v1/images/{name}/upload end to end: the gateway streams the body to a real agent's node API.

The agent runs as a real process (TLS node API, pinned certificate, the
gateway let in as a ServiceAccount of the test's namespace) against the
session's control plane and the machine's libvirtd; it writes the upload into
its cache, verifies it and reports its Host's entry Ready. The gateway runs
through Quart's test harness, and as a real process for the memory check: a
256 MiB upload streamed through it leaves its peak memory far below that.
"""

from __future__ import annotations

import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from quart.typing import TestClientProtocol as Client

from vapor.devenv import ControlPlane
from vapor.gateway import create_app
from vapor.kube import Kube, NotFound
from vapor.model import Host

from ..agent.imagetools import make_qcow2, sha256_of
from ..conftest import Kubectl
from ..support.agent import AgentProcess, qemu_reachable_dir
from ..support.libvirtd import Libvirtd
from ..support.wait import eventually
from .conftest import GatewayProcess, Users, bearer, login
from .test_body_limits import _peak_rss

MB = 1 << 20
GATEWAY_SA = "gateway"


@pytest.fixture
def work_dir() -> Iterator[Path]:
    path = qemu_reachable_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def agent(
    control_plane: ControlPlane, kubectl: Kubectl, kube: Kube, namespace: str, work_dir: Path
) -> AsyncIterator[AgentProcess]:
    """A real agent whose TLS node API lets in the ServiceAccount ``gateway`` of the test's namespace."""
    daemon = Libvirtd().start()  # the running one, or one for this test
    kubectl("create", "serviceaccount", GATEWAY_SA, "-n", namespace)
    node = f"vtest-up-{uuid.uuid4().hex[:8]}"
    process = AgentProcess(
        control_plane.kubeconfig, node, work_dir / node, lease_namespace=namespace, libvirt_uri=daemon.uri,
        extra_args=("--api-allowed-user", f"system:serviceaccount:{namespace}:{GATEWAY_SA}"),
    ).start()  # fmt: skip
    try:

        async def published() -> bool:
            try:
                host = await kube.resources(Host).get(node)
            except NotFound:  # the agent has not registered yet
                return False
            return bool(host.status and host.status.agent_endpoint and host.status.agent_endpoint.cert_sha256)

        await eventually(published, 60, "the agent's node API endpoint")
        yield process
    finally:
        process.stop()
        kubectl("delete", "host", node, "--ignore-not-found", "--wait=false", check=False)
        daemon.stop()


@pytest.fixture
def upload_config(gateway_config: dict[str, Any], namespace: str) -> dict[str, Any]:
    return {**gateway_config, "AGENT_SERVICE_ACCOUNT": f"{namespace}/{GATEWAY_SA}", "UPLOAD_MAX_BYTES": 300 * MB}


@pytest.fixture
async def client(upload_config: dict[str, Any]) -> AsyncIterator[Client]:
    async with create_app(upload_config).test_app() as test_app:
        yield test_app.test_client()


@pytest.fixture
def image_names(kubectl: Kubectl) -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for name in made:
        kubectl("delete", "image", name, "--ignore-not-found", "--wait=false", check=False)


def new_image(names: list[str]) -> str:
    name = f"up-{uuid.uuid4().hex[:8]}"
    names.append(name)
    return name


async def test_an_upload_reaches_the_host_and_its_copy_turns_ready(
    client: Client, users: Users, agent: AgentProcess, image_names: list[str], work_dir: Path
) -> None:
    token = (await login(client, users.admin))["token"]
    source = make_qcow2(work_dir / "files", "up.qcow2", data_mib=4, virtual="64M")
    sha = sha256_of(source)
    name = new_image(image_names)
    body = {"name": name, "source": {"upload": {}}, "checksum": sha, "format": "qcow2"}
    assert (await client.post("/api/v1/images", json=body, headers=bearer(token))).status_code == 201
    response = await client.put(
        f"/api/v1/images/{name}/upload?host={agent.node_name}", data=source.read_bytes(), headers=bearer(token)
    )
    answer = await response.get_json()
    assert response.status_code == 201, answer
    assert answer["data"] == {
        "host": agent.node_name,
        "sha256": sha,
        "size": source.stat().st_size,
        "virtual_size": 64 * MB,
        "format": "qcow2",
    }

    async def ready_entry() -> dict[str, Any] | None:
        shown = (await (await client.get(f"/api/v1/images/{name}", headers=bearer(token))).get_json())["data"]
        return next((h for h in shown["hosts"] if h["host"] == agent.node_name and h["phase"] == "Ready"), None)

    entry = await eventually(ready_entry, 30, "the host's entry Ready")
    assert entry["sha256"] == sha

    # other bytes than the checksum: the agent's refusal comes back in the envelope, and nothing is kept
    other = new_image(image_names)
    body = {"name": other, "source": {"upload": {}}, "checksum": "0" * 64, "format": "qcow2"}
    assert (await client.post("/api/v1/images", json=body, headers=bearer(token))).status_code == 201
    refused = await client.put(
        f"/api/v1/images/{other}/upload?host={agent.node_name}", data=source.read_bytes(), headers=bearer(token)
    )
    error = (await refused.get_json())["error"]
    assert refused.status_code == 409 and error["code"] == "CONFLICT", error


def _stream_put(url: str, path: str, size: int, token: str) -> tuple[str, str]:
    """PUT ``size`` zero bytes, chunked, as fast as the gateway takes them; (status line, body)."""
    parts = urlsplit(url)
    head = [f"PUT {path} HTTP/1.1", f"Host: {parts.netloc}", "Content-Type: application/octet-stream",
            "Transfer-Encoding: chunked", f"Authorization: Bearer {token}", "Connection: close"]  # fmt: skip
    block = b"\0" * MB
    with socket.create_connection((parts.hostname, parts.port), timeout=120) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        try:
            for _ in range(size // MB):
                sock.sendall(b"%x\r\n%s\r\n" % (len(block), block))
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the gateway answered and stopped reading: what it said is below
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    text = answer.decode(errors="replace")
    return text.split("\r\n", 1)[0], text.partition("\r\n\r\n")[2]


def test_a_large_upload_streams_through_the_gateway_process_without_being_held(
    control_plane: ControlPlane, upload_config: dict[str, Any], users: Users, agent: AgentProcess,
    image_names: list[str], tmp_path: Path,
) -> None:  # fmt: skip
    keys = ("PAM_SERVICE", "ADMIN_GROUPS", "SECRET_NAMESPACE", "AGENT_SERVICE_ACCOUNT", "UPLOAD_MAX_BYTES")
    env = {f"VAPOR_{k}": str(upload_config[k]) for k in keys}
    env["VAPOR_RATE_LIMIT"] = "0"
    gateway = GatewayProcess(control_plane.kubeconfig, env, tmp_path / "gateway.log").start()
    try:
        assert gateway.proc is not None
        auth = {"username": users.admin.name, "password": users.admin.password}
        token = httpx.post(f"{gateway.url}/api/v1/auth/login", json=auth, timeout=30).json()["data"]["token"]
        name = new_image(image_names)
        body = {"name": name, "source": {"upload": {}}, "format": "raw"}
        created = httpx.post(f"{gateway.url}/api/v1/images", json=body, headers=bearer(token), timeout=30)
        assert created.status_code == 201, created.text
        path = f"/api/v1/images/{name}/upload?host={agent.node_name}"
        before = _peak_rss(gateway.proc.pid)
        status, answer = _stream_put(gateway.url, path, 256 * MB, token)
        grown = _peak_rss(gateway.proc.pid) - before
        assert status == "HTTP/1.1 201 ", (status, answer, gateway.tail())
        assert '"size":268435456' in answer
        assert grown < 64 * MB, f"the gateway's peak memory grew by {grown // MB} MB for a 256 MB upload"
        # over the upload limit (300 MB here), with no length announced: 413 once it passes it
        status, answer = _stream_put(gateway.url, path, 320 * MB, token)
        assert status == "HTTP/1.1 413 ", (status, answer)
        assert "at most 314572800 bytes" in answer
    finally:
        gateway.stop()

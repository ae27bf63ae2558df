"""``PUT /images/{name}/upload`` of the agent's node API: the body streamed into the cache, verified, Ready.

The agent runs as a real process whose node API lets in a ServiceAccount of
the test's namespace (standing in for the gateway's) over plain HTTP; the
test streams the file in chunks (chunked transfer encoding, no length known
in advance, as a gateway passing a client's body on may).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from vapor.devenv.processes import free_port
from vapor.kube import Kube
from vapor.model import Image, names

from ..conftest import Kubectl
from ..support.agent import AgentProcess
from ..support.wait import eventually
from .imagetools import cache_files, entry_of, image_name, images, make_qcow2, sha256_of, wait_entry

__all__ = ["images"]  # the fixture

MakeImage = Callable[..., Awaitable[Image]]


@pytest.fixture
def uploader(
    agent_factory: Callable[..., AgentProcess], node_name: str, kubectl: Kubectl, namespace: str
) -> Iterator[tuple[AgentProcess, str, str]]:
    """An agent whose node API (plain HTTP) lets in the ServiceAccount ``gateway`` of the test's namespace."""
    kubectl("create", "serviceaccount", "gateway", "-n", namespace)
    port = free_port()
    agent = agent_factory(
        node_name,
        extra_args=(
            "--api-bind", f"127.0.0.1:{port}", "--no-api-tls",
            "--api-allowed-user", f"system:serviceaccount:{namespace}:gateway",
        ),
    ).start()  # fmt: skip
    token = kubectl("create", "token", "gateway", "-n", namespace, f"--audience={names.AGENT_AUDIENCE}").stdout.strip()
    yield agent, f"http://127.0.0.1:{port}", token


async def _chunks(path: Path, size: int = 256 << 10) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while block := f.read(size):
            yield block


async def _put(url: str, token: str, body: object) -> tuple[int, dict[str, object]]:
    async def attempt() -> tuple[int, dict[str, object]] | None:
        try:
            async with aiohttp.ClientSession() as session:
                headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"}
                async with session.put(url, data=body, headers=headers) as response:
                    return response.status, await response.json()
        except aiohttp.ClientConnectionError:
            return None  # the agent is not listening yet

    return await eventually(attempt, 30, f"PUT {url}")  # type: ignore[no-any-return]


async def test_an_upload_is_streamed_into_the_cache_and_reported_ready(
    kube: Kube, uploader: tuple[AgentProcess, str, str], images: MakeImage, qemu_tmp: Path
) -> None:
    agent, api, token = uploader
    source = make_qcow2(qemu_tmp / "up", "upload.qcow2", data_mib=8, virtual="64M")
    sha = sha256_of(source)
    name = image_name()
    await images(name, source={"upload": {}}, checksum=sha, format="qcow2")
    status, body = await _put(f"{api}/images/{name}/upload", token, _chunks(source))
    assert status == 201, body
    assert body["data"] == {
        "host": agent.node_name,
        "sha256": sha,
        "size": source.stat().st_size,
        "virtualSize": 64 << 20,
        "format": "qcow2",
    }
    entry = await wait_entry(kube, name, agent.node_name, "Ready", agent, timeout=10)
    assert entry.sha256 == sha and entry.virtual_size == 64 << 20
    assert cache_files(agent) == [f"{sha}.qcow2"]


async def test_an_upload_with_another_checksum_is_refused_and_not_kept(
    kube: Kube, uploader: tuple[AgentProcess, str, str], images: MakeImage, qemu_tmp: Path
) -> None:
    agent, api, token = uploader
    source = make_qcow2(qemu_tmp / "up", "upload.qcow2")
    name = image_name()
    await images(name, source={"upload": {}}, checksum="b" * 64, format="qcow2")
    status, body = await _put(f"{api}/images/{name}/upload", token, _chunks(source))
    assert status == 409, body
    assert body["error"]["code"] == "CONFLICT" and sha256_of(source) in body["error"]["message"]  # type: ignore[index]
    assert cache_files(agent) == []
    assert await entry_of(kube, name, agent.node_name) is None or (
        (await entry_of(kube, name, agent.node_name)).phase != "Ready"  # type: ignore[union-attr]
    )


async def test_an_upload_in_another_format_is_invalid(
    uploader: tuple[AgentProcess, str, str], images: MakeImage, qemu_tmp: Path
) -> None:
    agent, api, token = uploader
    source = make_qcow2(qemu_tmp / "up", "upload.qcow2")
    name = image_name()
    await images(name, source={"upload": {}}, format="iso")
    status, body = await _put(f"{api}/images/{name}/upload", token, source.read_bytes())
    assert status == 422, body
    assert body["error"]["code"] == "INVALID_INPUT"  # type: ignore[index]
    assert cache_files(agent) == []


async def test_only_an_upload_image_takes_an_upload(uploader: tuple[AgentProcess, str, str], images: MakeImage) -> None:
    _agent, api, token = uploader
    name = image_name()
    await images(name, source={"http": {"url": "http://127.0.0.1:9/x.qcow2"}}, checksum="c" * 64)
    status, body = await _put(f"{api}/images/{name}/upload", token, b"data")
    assert status == 409 and body["error"]["code"] == "CONFLICT"  # type: ignore[index]
    status, body = await _put(f"{api}/images/{image_name()}/upload", token, b"data")
    assert status == 404 and body["error"]["code"] == "NOT_FOUND"  # type: ignore[index]

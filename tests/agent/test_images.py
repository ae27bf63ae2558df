"""The agent fetches Images into its host's cache: verified, reported in its own status entry, never partial.

Each test serves image files it made with qemu-img from a loopback HTTP
server (Range-capable, see tests/support/imageserver.py), creates an Image,
and names the agent's node in status.fetchHosts as the operator would. What
is checked is what a person sees: the Image's status.hosts entry of that
node, and the files in the agent's cache folder.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from vapor.kube import Kube
from vapor.model import Host, Image
from vapor.model.image import ImageHostStatus

from ..support.agent import AgentProcess
from ..support.imageserver import ImageServer
from ..support.wait import eventually
from .conftest import host_of
from .imagetools import ask_fetch, cache_files, entry_of, image_name, images, make_qcow2, sha256_of, wait_entry

__all__ = ["images"]  # the fixture

MakeImage = Callable[..., Awaitable[Image]]


async def fetched(
    kube: Kube, agent: AgentProcess, images: MakeImage, name: str, phase: str, **spec: Any
) -> ImageHostStatus:
    """Create the Image ``name``, name the agent's node in its fetchHosts, and wait for its entry in ``phase``."""
    await images(name, **spec)
    await ask_fetch(kube, name, agent.node_name)
    return await wait_entry(kube, name, agent.node_name, phase, agent)


async def test_an_image_is_fetched_verified_and_reported_ready(
    kube: Kube, agent: AgentProcess, images: MakeImage, qemu_tmp: Path
) -> None:
    served = make_qcow2(qemu_tmp / "served", "disk.qcow2", data_mib=2, virtual="64M")
    sha = sha256_of(served)
    name = image_name()
    with ImageServer(served) as server:
        await images(name, source={"http": {"url": server.url}}, checksum=sha, format="qcow2")
        await asyncio.sleep(1)
        assert cache_files(agent) == []  # not wanted here yet: nothing fetched
        await ask_fetch(kube, name, agent.node_name)
        entry = await wait_entry(kube, name, agent.node_name, "Ready", agent)
    assert entry.sha256 == sha
    assert entry.bytes == served.stat().st_size
    assert entry.virtual_size == 64 << 20
    assert entry.percent == 100
    assert cache_files(agent) == [f"{sha}.qcow2"]
    assert sha256_of(agent.state_dir / "image-cache" / f"{sha}.qcow2") == sha
    fields = ((await kube.resources(Image).get(name)).metadata.model_extra or {}).get("managedFields") or []
    managers = {m["manager"] for m in fields}
    assert f"vapor-agent-images.{agent.node_name}" in managers


async def test_a_checksum_mismatch_fails_and_leaves_nothing_in_the_cache(
    kube: Kube, agent: AgentProcess, images: MakeImage, qemu_tmp: Path
) -> None:
    served = make_qcow2(qemu_tmp / "served", "disk.qcow2")
    name = image_name()
    with ImageServer(served) as server:
        entry = await fetched(
            kube, agent, images, name, "Failed", source={"http": {"url": server.url}}, checksum="0" * 64, format="qcow2"
        )
    assert entry.reason == "ChecksumMismatch"
    assert sha256_of(served) in (entry.message or "")
    assert cache_files(agent) == []
    assert list((agent.state_dir / "image-cache" / ".partial").iterdir()) == []


async def test_a_format_other_than_the_images_fails(
    kube: Kube, agent: AgentProcess, images: MakeImage, qemu_tmp: Path
) -> None:
    served = make_qcow2(qemu_tmp / "served", "disk.qcow2")
    name = image_name()
    with ImageServer(served) as server:
        entry = await fetched(
            kube,
            agent,
            images,
            name,
            "Failed",
            source={"http": {"url": server.url}},
            checksum=sha256_of(served),
            format="raw",
        )
    assert entry.reason == "FormatMismatch"
    assert "qcow2" in (entry.message or "") and "raw" in (entry.message or "")
    assert cache_files(agent) == []


async def test_a_qcow2_with_a_backing_file_is_refused(
    kube: Kube, agent: AgentProcess, images: MakeImage, qemu_tmp: Path
) -> None:
    folder = qemu_tmp / "served"
    folder.mkdir(parents=True, exist_ok=True)
    top = folder / "top.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", "/etc/shadow", "-F", "raw", str(top), "1M"], check=True
    )
    top.chmod(0o644)
    name = image_name()
    with ImageServer(top) as server:
        entry = await fetched(
            kube,
            agent,
            images,
            name,
            "Failed",
            source={"http": {"url": server.url}},
            checksum=sha256_of(top),
            format="qcow2",
        )
    assert entry.reason == "BackingFileRefused"
    assert cache_files(agent) == []


async def test_a_missing_file_fails_with_the_servers_status(
    kube: Kube, agent: AgentProcess, images: MakeImage, qemu_tmp: Path
) -> None:
    served = make_qcow2(qemu_tmp / "served", "disk.qcow2")
    name = image_name()
    with ImageServer(served) as server:
        server.missing = True
        url = server.url.replace("http://", "http://reader:s3cr3t-pw@")  # credentials in the URL
        entry = await fetched(
            kube, agent, images, name, "Failed", source={"http": {"url": url}}, checksum="1" * 64, format="qcow2"
        )
        assert len(server.requests) == 1  # a 404 is not retried
    assert entry.reason == "FetchFailed"
    assert "404" in (entry.message or "") and server.url in (entry.message or "")
    assert "s3cr3t-pw" not in (entry.message or "") and "s3cr3t-pw" not in agent.log()


async def test_a_host_path_outside_the_image_folders_is_refused(
    kube: Kube, agent: AgentProcess, images: MakeImage
) -> None:
    name = image_name()
    entry = await fetched(
        kube, agent, images, name, "Refused", source={"hostPath": {"path": "/var/lib/secret.img"}}, format="raw"
    )
    assert entry.reason == "HostPathRefused"
    assert "not in an image folder" in (entry.message or "")


async def test_a_host_path_in_an_image_folder_is_copied(
    kube: Kube, agent: AgentProcess, images: MakeImage, qemu_tmp: Path
) -> None:
    source = make_qcow2(qemu_tmp / "library", "local.qcow2")  # qemu_tmp is the test agent's image folder
    name = image_name()
    entry = await fetched(
        kube, agent, images, name, "Ready", source={"hostPath": {"path": str(source)}}, format="qcow2"
    )
    assert entry.sha256 == sha256_of(source)
    assert source.exists()  # copied, never moved or changed


async def test_prefetch_selects_the_hosts_by_label(
    kube: Kube, agent: AgentProcess, images: MakeImage, qemu_tmp: Path
) -> None:
    served = make_qcow2(qemu_tmp / "served", "disk.qcow2")
    host = await eventually(lambda: _host(kube, agent.node_name), 30, "the Host")
    host_id = (host.metadata.labels or {})["vapor.io/host-id"]
    name = image_name()
    with ImageServer(served) as server:
        await images(
            name,
            source={"http": {"url": server.url}},
            checksum=sha256_of(served),
            prefetch={"hostSelector": {"vapor.io/host-id": host_id}},
        )
        await wait_entry(kube, name, agent.node_name, "Ready", agent)


async def _host(kube: Kube, node: str) -> Host | None:
    host = await host_of(kube, node)
    return host if host is not None and (host.metadata.labels or {}).get("vapor.io/host-id") else None


async def test_an_agent_killed_mid_download_resumes_without_using_the_partial_file(
    kube: Kube, agent: AgentProcess, images: MakeImage, qemu_tmp: Path
) -> None:
    served = make_qcow2(qemu_tmp / "served", "big.qcow2", data_mib=6)
    sha = sha256_of(served)
    name = image_name()
    with ImageServer(served) as server:
        server.rate = 2 << 20  # 2 MiB/s: about 3 s
        await images(name, source={"http": {"url": server.url}}, checksum=sha, format="qcow2")
        await ask_fetch(kube, name, agent.node_name)

        async def halfway() -> bool:
            entry = await entry_of(kube, name, agent.node_name)
            return entry is not None and entry.phase == "Fetching" and (entry.percent or 0) >= 40

        await eventually(halfway, 30, "the download to be under way")
        agent.stop(signal.SIGKILL)
        partial = list((agent.state_dir / "image-cache" / ".partial").iterdir())
        assert len(partial) == 1 and 0 < partial[0].stat().st_size < served.stat().st_size
        assert cache_files(agent) == []  # the partial file is never in the cache proper
        server.rate = None
        agent.start()
        entry = await wait_entry(kube, name, agent.node_name, "Ready", agent)
        resumed = [r for r in server.requests if r.range]
    assert entry.sha256 == sha
    assert cache_files(agent) == [f"{sha}.qcow2"]
    assert sha256_of(agent.state_dir / "image-cache" / f"{sha}.qcow2") == sha
    assert resumed and resumed[0].status == 206  # it went on from the bytes it had


async def test_an_image_that_would_eat_the_reserve_is_refused(
    kube: Kube, agent_factory: Callable[..., AgentProcess], node_name: str, images: MakeImage, qemu_tmp: Path
) -> None:
    agent = agent_factory(node_name, extra_args=("--image-reserve", "1000Ti")).start()
    served = make_qcow2(qemu_tmp / "served", "disk.qcow2")
    name = image_name()
    with ImageServer(served) as server:
        entry = await fetched(
            kube, agent, images, name, "Refused", source={"http": {"url": server.url}}, checksum=sha256_of(served)
        )
    assert entry.reason == "InsufficientStorage"
    assert "--image-reserve" in (entry.message or "")
    assert cache_files(agent) == []


async def test_a_download_cut_halfway_goes_on_with_a_range_request(
    kube: Kube, agent: AgentProcess, images: MakeImage, qemu_tmp: Path
) -> None:
    served = make_qcow2(qemu_tmp / "served", "disk.qcow2", data_mib=2)
    sha = sha256_of(served)
    name = image_name()
    with ImageServer(served) as server:
        server.cut_after(1 << 20)
        entry = await fetched(kube, agent, images, name, "Ready", source={"http": {"url": server.url}}, checksum=sha)
        asked = [(r.range, r.status) for r in server.requests]
    assert entry.sha256 == sha
    assert asked == [(None, 200), (f"bytes={1 << 20}-", 206)]

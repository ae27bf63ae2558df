"""What the agent's Image tests share: image files made with qemu-img, Images, and their host entries."""

from __future__ import annotations

import hashlib
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from vapor.kube import Kube, NotFound
from vapor.model import Image, MetadataPatch, ObjectMeta
from vapor.model.image import ImageHostStatus, ImageSpec, ImageStatus

from ..support.agent import AgentProcess
from ..support.wait import eventually

STAND_IN = "test-operator-stand-in"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def make_qcow2(folder: Path, name: str, *, data_mib: int = 1, virtual: str = "64M") -> Path:
    """A qcow2 image with ``data_mib`` MiB of random data at its start (so its file has that size)."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = folder / f"{name}.raw"
    with raw.open("wb") as f:
        f.write(os.urandom(data_mib << 20))
    out = folder / name
    subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(out)], check=True)
    subprocess.run(["qemu-img", "resize", "-q", "-f", "qcow2", str(out), virtual], check=True)
    raw.unlink()
    out.chmod(0o644)
    return out


def image_name() -> str:
    return f"vtest-img-{uuid.uuid4().hex[:8]}"


def cache_files(agent: AgentProcess) -> list[str]:
    """The verified files of the agent's cache (partial files left out)."""
    folder = agent.state_dir / "image-cache"
    return sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.exists() else []


@pytest.fixture
async def images(kube: Kube) -> AsyncIterator[Callable[..., Awaitable[Image]]]:
    """``await images(name, **spec)`` creates an Image; every one made is deleted after the test."""
    made: list[str] = []
    resources = kube.resources(Image)

    async def create(name: str, *, finalizers: list[str] | None = None, **spec: Any) -> Image:
        image = Image(metadata=ObjectMeta(name=name, finalizers=finalizers), spec=ImageSpec.model_validate(spec))
        made.append(name)
        return await resources.create(image, field_manager=STAND_IN)

    yield create
    for name in made:
        try:
            await resources.patch(name, metadata=MetadataPatch(finalizers=[]), field_manager=STAND_IN)
            await resources.delete(name)
        except NotFound:
            pass


async def ask_fetch(kube: Kube, name: str, node: str) -> None:
    """Name ``node`` in the Image's status.fetchHosts, as the operator does for a placement."""
    await kube.resources(Image).apply_status(name, ImageStatus(fetch_hosts=[node]), field_manager=STAND_IN)


async def entry_of(kube: Kube, name: str, node: str) -> ImageHostStatus | None:
    return (await kube.resources(Image).get(name)).on_host(node)


async def wait_entry(
    kube: Kube, name: str, node: str, phase: str, agent: AgentProcess, timeout: float = 60
) -> ImageHostStatus:
    """The node's entry of the Image once it is in ``phase``."""

    async def probe() -> ImageHostStatus | None:
        entry = await entry_of(kube, name, node)
        return entry if entry is not None and entry.phase == phase else None

    try:
        return await eventually(probe, timeout, f"{name} to be {phase} on {node}")  # type: ignore[no-any-return]
    except AssertionError:
        print(agent.log()[-20000:])
        raise

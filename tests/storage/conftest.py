"""Fixtures of the storage tests: loop devices that are always taken down again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .loops import LoopDevices


@pytest.fixture
def loops(tmp_path: Path) -> Iterator[LoopDevices]:
    """Loop devices over sparse files in the test's tmp dir; unmounted, detached and removed after."""
    devices = LoopDevices(tmp_path / "images")
    try:
        yield devices
    finally:
        devices.cleanup()


# The agent (real process, real libvirtd) and the gateway (real app, real PAM users) of the other suites.
from ..agent.conftest import agent_factory, libvirtd, node_name, qemu_tmp, virt  # noqa: E402,F401
from ..conftest import Kubectl  # noqa: E402
from ..gateway.conftest import app, client, gateway_config, kube, pam_service_name, secret_namespace, users  # noqa: E402,F401


@pytest.fixture
def mounts_of_node(kubectl: Kubectl, node_name: str) -> Iterator[str]:  # noqa: F811
    """The test's node name; after the test its Mounts are deleted (finalizers dropped once no agent runs)."""
    yield node_name
    selector = f"vapor.io/host={node_name}"
    listed = kubectl("get", "mounts.vapor.io", "-l", selector, "-o", "name", check=False).stdout.split()
    for obj in listed:
        kubectl("patch", obj, "--type=merge", "-p", '{"metadata":{"finalizers":null}}', check=False)
    if listed:
        kubectl("delete", "--ignore-not-found", "--wait=false", *listed, check=False)

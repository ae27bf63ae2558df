"""Fixtures shared by the suite: one real control plane per test session.

The control plane is a real etcd and kube-apiserver (built by
hack/kube-binaries.sh, cached under ~/.cache/vapor) in a temporary folder,
stopped at the end of the session even when tests fail. Each test that
creates objects gets its own namespace, or unique names for cluster-scoped
kinds, and removes them afterwards.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from vapor.devenv import ControlPlane

from .support import guest as guest_support
from .support import quartapp

# The stand-ins of a containerized agent's node (tests/support/node.py), for every folder's tests.
from .support.node import node_admin, node_init  # noqa: F401

quartapp.install()  # 60 s start-up and shut-down limits for in-process gateway apps, not Quart's 6 s

# The Containerfile's image, built once for tests/image and tests/cluster; the cluster tests' release.
pytest_plugins = ["tests.image.build", "tests.cluster.fixtures"]

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


class Kubectl:
    """The pinned kubectl, pointed at the session's control plane."""

    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp

    def __call__(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.cp.kubectl_run(*args, input=input, check=check)

    def apply(
        self, manifest: dict[str, Any] | str, *extra: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        # JSON, not YAML: kubectl reads YAML 1.2, where a label like "1e100000" would be a number.
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        return self("apply", "-f", "-", *extra, input=text, check=check)

    def get_json(self, *args: str) -> dict[str, Any]:
        return dict(json.loads(self("get", *args, "-o", "json").stdout))


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    cp = ControlPlane(tmp_path_factory.mktemp("controlplane"))
    with cp:
        yield cp


@pytest.fixture(scope="session")
def kubectl(control_plane: ControlPlane) -> Kubectl:
    return Kubectl(control_plane)


@pytest.fixture(scope="session")
def guest_image() -> guest_support.GuestImage:
    """The Debian test guest (hack/guest-image.sh): built on first use (minutes), then from its cache."""
    return guest_support.guest_image()


@pytest.fixture(scope="session")
def guest_key(tmp_path_factory: pytest.TempPathFactory) -> guest_support.SshKey:
    """An ed25519 key pair made for this session, for guests' ssh_authorized_keys."""
    return guest_support.make_ssh_key(tmp_path_factory.mktemp("guest-ssh"))


@pytest.fixture
def image_server(guest_image: guest_support.GuestImage) -> Iterator[guest_support.ImageServer]:
    """The guest image served over loopback HTTP (Range, and the failure knobs of ImageServer)."""
    with guest_support.ImageServer(guest_image.path) as server:
        yield server


@pytest.fixture
def namespace(kubectl: Kubectl) -> Iterator[str]:
    """A fresh namespace, deleted (without waiting) after the test."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    kubectl("create", "namespace", name)
    yield name
    # No namespace controller runs in the test control plane: a deleted
    # namespace would keep its objects forever, and the operator of a later
    # test would place those VMs. Delete them here; no agent of this test is
    # left to run their finalizers, so drop those too.
    kubectl("delete", "virtualmachines,migrations", "--all", "-n", name, "--wait=false", check=False)
    for obj in kubectl("get", "virtualmachines,migrations", "-n", name, "-o", "name", check=False).stdout.split():
        kubectl("patch", obj, "-n", name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}', check=False)
    kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Names for cluster-scoped objects that no other test (or run) uses."""
    suffix = uuid.uuid4().hex[:8]
    return lambda base: f"{base}-{suffix}"


@pytest.fixture
def cluster_objects(kubectl: Kubectl) -> Iterator[list[str]]:
    """Collects ``kind/name`` of cluster-scoped objects a test made, and deletes them after."""
    made: list[str] = []
    yield made
    if made:
        kubectl("delete", "--ignore-not-found", "--wait=false", *made, check=False)


def load_example(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((EXAMPLES / name).read_text()))


def contains(actual: Any, expected: Any) -> bool:
    """Whether ``actual`` holds everything in ``expected`` (the server may add defaults)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and contains(actual[k], v) for k, v in expected.items())
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(expected)
            and all(contains(a, e) for a, e in zip(actual, expected, strict=True))
        )
    return bool(actual == expected)

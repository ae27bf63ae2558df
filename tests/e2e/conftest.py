"""The whole of Vapor as a user runs it (tests/support/stack.py), on a private libvirtd."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vapor.devenv import ControlPlane

from ..conftest import Kubectl
from ..support.libvirtd import Libvirtd
from ..support.stack import Stack, running_stack, vm_namespace


@pytest.fixture(scope="module")
def stack(control_plane: ControlPlane, kubectl: Kubectl) -> Iterator[Stack]:
    daemon = Libvirtd().start()
    try:
        with running_stack(control_plane, kubectl, daemon.uri) as s:
            yield s
    finally:
        daemon.stop()


@pytest.fixture
def vms_namespace(stack: Stack, kubectl: Kubectl) -> Iterator[str]:
    """A namespace for one test's VMs, emptied and removed afterwards."""
    with vm_namespace(stack, kubectl) as name:
        yield name

"""The whole of Vapor as a user runs it (tests/support/stack.py), on a private libvirtd."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vapor.devenv import ControlPlane

from ..conftest import Kubectl
from ..support.stack import Stack, private_stack, vm_namespace


@pytest.fixture(scope="module")
def stack(control_plane: ControlPlane, kubectl: Kubectl) -> Iterator[Stack]:
    with private_stack(control_plane, kubectl) as s:
        yield s


@pytest.fixture
def vms_namespace(stack: Stack, kubectl: Kubectl) -> Iterator[str]:
    """A namespace for one test's VMs, emptied and removed afterwards."""
    with vm_namespace(stack, kubectl) as name:
        yield name

"""The ledger's caches against the real API server: what they keep of each object.

At 10,000 VMs the operator's memory is mostly its VM cache; who wrote which
field (metadata.managedFields, four writers on a placed VM) was half of each
cached VM and nothing in the operator reads it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from vapor.devenv import ControlPlane
from vapor.kube import Kube
from vapor.model import ObjectMeta, VirtualMachine, VirtualMachineSpec, VirtualMachineStatus
from vapor.operator.ledger import Ledger


@pytest.fixture
async def kube(control_plane: ControlPlane) -> AsyncIterator[Kube]:
    async with await Kube.connect(str(control_plane.kubeconfig)) as connection:
        yield connection


async def test_the_vm_cache_keeps_no_managed_fields(kube: Kube, namespace: str) -> None:
    vms = kube.resources(VirtualMachine)
    meta = ObjectMeta(name="listed", namespace=namespace)
    listed = VirtualMachine(metadata=meta, spec=VirtualMachineSpec(cpu=1, memory="64Mi"))
    await vms.create(listed, field_manager="test-writer")
    read = await vms.get("listed", namespace)
    assert "managedFields" in (read.metadata.model_extra or {})  # what the API server answers: the writers
    ledger = Ledger(kube)
    await ledger.start()
    try:
        cached = ledger.vm(namespace, "listed")  # from the first list
        assert cached is not None and cached.spec.cpu == read.spec.cpu
        assert "managedFields" not in (cached.metadata.model_extra or {})
        status = VirtualMachineStatus(phase="Stopped")
        changed = await vms.patch_status("listed", status, namespace=namespace, field_manager="test-writer")
        await ledger.seen(changed, gone=False)  # from the watch
        watched = ledger._vms.cache.get("listed", namespace)
        assert watched is not None and watched.phase == "Stopped"
        assert "managedFields" not in (watched.metadata.model_extra or {})
    finally:
        await ledger.stop()

"""What the benchmarks write: one typical VirtualMachine, the same everywhere so figures compare."""

from __future__ import annotations

from typing import Any

from vapor.model import DiskSpec, NetworkSpec, ObjectMeta, VirtualMachine, VirtualMachineSpec


def typical_vm(name: str, namespace: str) -> dict[str, Any]:
    """A 2-CPU, 512 MiB VM with one disk and one network card, as the API expects it."""
    return VirtualMachine(
        metadata=ObjectMeta(name=name, namespace=namespace),
        spec=VirtualMachineSpec(
            memory="512Mi",
            cpu=2,
            run_strategy="Running",
            disks=[DiskSpec(name="root", size="10Gi", boot_order=1)],
            networks=[NetworkSpec(name="lan", source="default")],
        ),
    ).to_api()

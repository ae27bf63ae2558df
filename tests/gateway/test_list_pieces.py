"""What the list bodies keep per object: the encoded view, not the buffer it was written into."""

from __future__ import annotations

import sys
import tracemalloc
from typing import Any

from vapor.gateway._bodies import ListBody
from vapor.gateway._views import vm_view
from vapor.kube import Informer, Kube
from vapor.model import ObjectMeta, VirtualMachine, VirtualMachineSpec


async def test_a_kept_piece_holds_about_its_own_length(kube: Kube) -> None:
    cache: Informer[VirtualMachine] = Informer(kube, VirtualMachine)  # never started: only its encoder is used
    bodies = ListBody(cache, vm_view, "vms")
    vms = [
        VirtualMachine(
            metadata=ObjectMeta(name=f"vm-{i}", namespace="a", uid=f"uid-{i}", resource_version="1"),
            spec=VirtualMachineSpec(memory="32Mi"),
        )
        for i in range(200)
    ]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        pieces: list[Any] = [bodies.encoded(vm) for vm in vms]
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    encoded = sum(sys.getsizeof(p) for p in pieces)
    # The pieces, the dict that keeps them and its tuples: well under twice the bytes themselves
    # (orjson's own bytes object held 8 KiB each, whatever its length: 12 times as much here).
    assert held < 2 * encoded, (held, encoded)

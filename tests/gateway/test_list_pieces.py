"""What the gateway's VM caches keep per VM: the encoded view, not the buffer it was written into; no managedFields."""

from __future__ import annotations

import sys
import tracemalloc
from typing import Any, cast

from quart.typing import TestAppProtocol as TestApp
from quart.typing import TestClientProtocol as Client

from vapor.gateway._bodies import ListBody
from vapor.gateway._views import vm_view
from vapor.kube import Informer, Kube
from vapor.model import ObjectMeta, VirtualMachine, VirtualMachineSpec

from .conftest import Users, bearer, login


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


async def test_the_vm_cache_keeps_no_managed_fields(app: TestApp, client: Client, users: Users, namespace: str) -> None:
    """Who wrote which field is half a VM's size in the API server's answer; no gateway view shows it."""
    token = (await login(client, users.admin))["token"]
    r = await client.post(
        "/api/v1/vms", json={"name": "a", "namespace": namespace, "memory": "32Mi"}, headers=bearer(token)
    )
    assert r.status_code == 201
    cached = cast(Any, app).app.extensions["vapor"].vms.get("a", namespace)
    assert cached is not None and cached.metadata.uid == (await r.get_json())["data"]["id"]
    assert "managedFields" not in cached.metadata.to_api() and not getattr(cached.metadata, "managedFields", None)

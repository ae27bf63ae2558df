"""vapor.kube against the real API server: typed reads and writes, watch cache, Events."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from vapor.devenv import ControlPlane
from vapor.devenv.processes import free_port
from vapor.kube import Conflict, Informer, Kube, NotFound
from vapor.model import (
    Condition,
    Host,
    HostSpec,
    InterfaceSpec,
    MetadataPatch,
    ObjectMeta,
    VirtualMachine,
    VirtualMachineSpec,
    VirtualMachineStatus,
)


@pytest.fixture
async def kube(control_plane: ControlPlane) -> AsyncIterator[Kube]:
    k = await Kube.connect(str(control_plane.kubeconfig))
    yield k
    await k.close()


def _vm(name: str, namespace: str) -> VirtualMachine:
    return VirtualMachine(metadata=ObjectMeta(name=name, namespace=namespace), spec=VirtualMachineSpec(memory="32Mi"))


async def test_create_get_patch_status_and_not_found(kube: Kube, namespace: str) -> None:
    vms = kube.resources(VirtualMachine)
    made = await vms.create(_vm("a", namespace), field_manager="test")
    assert made.metadata.uid and made.spec.run_strategy == "Halted"
    patched = await vms.patch_status(
        "a", VirtualMachineStatus(phase="Stopped"), namespace=namespace, field_manager="test"
    )
    assert patched.status is not None and patched.status.phase == "Stopped"
    listed, version = await vms.list(namespace)
    assert [v.name for v in listed] == ["a"] and version
    with pytest.raises(NotFound):
        await vms.get("missing", namespace)


async def test_server_side_apply_records_the_field_manager(kube: Kube, namespace: str) -> None:
    vms = kube.resources(VirtualMachine)
    applied = await vms.apply(_vm("b", namespace), field_manager="vapor-gateway:alice")
    raw = applied.model_dump(by_alias=True)["metadata"]
    managers = {m["manager"] for m in raw.get("managedFields") or raw.get("managed_fields") or []}
    assert "vapor-gateway:alice" in managers


async def test_informer_follows_creates_updates_and_deletes(kube: Kube, namespace: str) -> None:
    informer = Informer(kube, VirtualMachine, namespace=namespace)
    seen: list[tuple[str, str]] = []
    informer.on_change(lambda e: seen.append((e.type, e.object.name)))
    await informer.start()
    try:
        vms = kube.resources(VirtualMachine)
        made = await vms.create(_vm("c", namespace), field_manager="test")
        assert await informer.wait_for(lambda: informer.get("c", namespace) is not None, 10)
        assert informer.by_uid(made.metadata.uid or "") is not None
        await vms.patch_status("c", VirtualMachineStatus(phase="Running"), namespace=namespace, field_manager="test")
        assert await informer.wait_for(
            lambda: (
                (o := informer.get("c", namespace)) is not None and o.status is not None and o.status.phase == "Running"
            ),
            10,
        )
        await vms.delete("c", namespace)
        assert await informer.wait_for(lambda: informer.get("c", namespace) is None, 10)
        assert ("ADDED", "c") in seen and ("DELETED", "c") in seen
    finally:
        await informer.stop()


async def test_informer_with_label_selector_sees_only_matching(kube: Kube, namespace: str) -> None:
    informer = Informer(kube, VirtualMachine, namespace=namespace, label_selector="vapor.io/host=node-x")
    await informer.start()
    try:
        vms = kube.resources(VirtualMachine)
        mine = _vm("mine", namespace)
        mine.metadata.labels = {"vapor.io/host": "node-x"}
        await vms.create(_vm("other", namespace), field_manager="test")
        await vms.create(mine, field_manager="test")
        assert await informer.wait_for(lambda: informer.get("mine", namespace) is not None, 10)
        assert informer.get("other", namespace) is None
    finally:
        await informer.stop()


async def test_event_names_who_did_what(kube: Kube, control_plane: ControlPlane, unique, cluster_objects) -> None:
    host = await kube.resources(Host).create(Host(metadata=ObjectMeta(name=unique("ev"))), field_manager="test")
    cluster_objects.append(f"host/{host.name}")
    await kube.events.record(
        host,
        reason="MaintenanceRequested",
        note="alice put the host into maintenance",
        controller="gateway",
        action="Patch",
    )
    out = control_plane.kubectl_run("describe", "host", host.name).stdout
    assert "MaintenanceRequested" in out and "alice put the host into maintenance" in out


async def test_merge_patches_write_only_the_fields_set_and_none_removes(kube: Kube, namespace: str) -> None:
    vms = kube.resources(VirtualMachine)
    made = _vm("typed", namespace)
    made.metadata.annotations = {"keep": "1", "drop": "2"}
    await vms.create(made, field_manager="test")
    await vms.patch_status(
        "typed", VirtualMachineStatus(phase="Stopped", migration="m1"), namespace=namespace, field_manager="test"
    )
    after = await vms.patch_status(
        "typed", VirtualMachineStatus(migration=None), namespace=namespace, field_manager="test"
    )
    assert after.status is not None and after.status.phase == "Stopped" and after.status.migration is None
    patched = await vms.patch(
        "typed",
        metadata=MetadataPatch(labels={"vapor.io/host": "h1"}, annotations={"drop": None}),
        spec=VirtualMachineSpec.partial(run_strategy="Running"),
        namespace=namespace,
        field_manager="test",
    )
    assert patched.metadata.labels == {"vapor.io/host": "h1"}
    assert patched.metadata.annotations == {"keep": "1"}
    assert patched.spec.run_strategy == "Running" and patched.spec.memory == "32Mi"
    with pytest.raises(Conflict):  # resourceVersion: the object changed since it was read
        await vms.patch(
            "typed",
            metadata=MetadataPatch(finalizers=["x/y"], resource_version=made.metadata.resource_version or "1"),
            namespace=namespace,
            field_manager="test",
        )


async def test_apply_status_owns_the_fields_set_and_gives_up_the_rest(kube: Kube, namespace: str) -> None:
    vms = kube.resources(VirtualMachine)
    await vms.create(_vm("owned", namespace), field_manager="test")
    mine = Condition(type="Scheduled", status="True", reason="Scheduled", message="placed")
    theirs = Condition(type="Ready", status="False", reason="Stopped", message="off")
    await vms.apply_status(
        "owned",
        VirtualMachineStatus(phase="Scheduled", host="h1", conditions=[mine]),
        namespace=namespace,
        field_manager="one",
    )
    await vms.apply_status("owned", VirtualMachineStatus(conditions=[theirs]), namespace=namespace, field_manager="two")
    # "one" applies again without phase (a None field is not sent): it gives phase up, keeps host
    await vms.apply_status(
        "owned",
        VirtualMachineStatus(phase=None, host="h1", conditions=[mine]),
        namespace=namespace,
        field_manager="one",
    )
    got = await vms.get("owned", namespace)
    assert got.status is not None and got.status.host == "h1" and got.status.phase is None
    assert sorted(c.type for c in got.status.conditions or []) == ["Ready", "Scheduled"]
    # With the version it was decided on, an apply fails once the object moved on.
    stale = got.metadata.resource_version
    await vms.patch_status("owned", VirtualMachineStatus(migration="m"), namespace=namespace, field_manager="x")
    with pytest.raises(Conflict):
        await vms.apply_status(
            "owned", VirtualMachineStatus(host="h2"), namespace=namespace, field_manager="one", resource_version=stale
        )
    assert (await vms.get("owned", namespace)).host == "h1"


async def test_apply_spec_merges_list_entries_by_key_and_dry_run_stores_nothing(
    kube: Kube, unique, cluster_objects
) -> None:
    hosts = kube.resources(Host)
    name = unique("spec")
    await hosts.create(Host(metadata=ObjectMeta(name=name)), field_manager="test")
    cluster_objects.append(f"host/{name}")
    eth0 = InterfaceSpec(name="eth0", state="up", gateway=None)  # None: not sent, not owned
    applied = await hosts.apply_spec(name, HostSpec.partial(interfaces=[eth0]), field_manager="one")
    assert applied.metadata.generation == 2
    eth1 = InterfaceSpec(name="eth1", mtu=9000)
    await hosts.apply_spec(name, HostSpec.partial(interfaces=[eth1]), field_manager="two")
    got = await hosts.get(name)
    assert [(i.name, i.state, i.mtu, i.gateway) for i in got.spec.interfaces or []] == [
        ("eth0", "up", None, None),
        ("eth1", None, 9000, None),
    ]
    dry = await hosts.apply_spec(
        name, HostSpec.partial(interfaces=[InterfaceSpec(name="eth2")]), field_manager="one", dry_run=True
    )
    # "one" applies eth2 without eth0: it gives eth0 up (only "one" owned it), "two" keeps eth1
    assert [i.name for i in dry.spec.interfaces or []] == ["eth1", "eth2"]
    assert [i.name for i in (await hosts.get(name)).spec.interfaces or []] == ["eth0", "eth1"]


async def test_a_proxy_in_the_environment_is_honoured_and_none_costs_no_lookups(
    control_plane: ControlPlane, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NETRC", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    plain = await Kube.connect(str(control_plane.kubeconfig))
    try:  # nothing to honour: each request skips aiohttp's proxy and netrc lookups (a worker thread each)
        assert plain.api.configuration.client_session_kwargs == {"trust_env": False}
        assert (await plain.resources(VirtualMachine).list(namespace))[0] == []
    finally:
        await plain.close()
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{free_port()}")  # a proxy that is not there
    proxied = await Kube.connect(str(control_plane.kubeconfig))
    try:
        with pytest.raises(aiohttp.ClientError):
            await proxied.resources(VirtualMachine).list(namespace)
    finally:
        await proxied.close()

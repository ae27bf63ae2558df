"""The shared model: quantities, and round trips of every example, offline and through the API server."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from kubernetes import client, config
from pydantic import ValidationError

from vapor.devenv import ControlPlane
from vapor.model import (
    KINDS,
    Condition,
    DiskSpec,
    Host,
    HostStatus,
    Migration,
    MigrationSpec,
    MigrationStatus,
    Mount,
    ObjectMeta,
    Resource,
    VirtualMachine,
    VirtualMachineSpec,
    VirtualMachineStatus,
    find_host,
    parse_quantity,
    quantity_bytes,
)

from .conftest import EXAMPLES, load_example

KIND_BY_NAME: dict[str, type[Resource]] = {k.__name__: k for k in KINDS}  # type: ignore[type-arg]
EXAMPLE_FILES = sorted(p.name for p in EXAMPLES.glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("16Mi", 16 * 2**20),
        ("2Gi", 2 * 2**30),
        ("1.5Gi", int(1.5 * 2**30)),
        ("1G", 10**9),
        ("512k", 512_000),
        (1024, 1024),
        ("100m", Decimal("0.1")),
        ("1e3", 1000),
        ("0", 0),
    ],
)
def test_parse_quantity(text: str | int, value: int | Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("bad", ["lots", "1.2.3Gi", "Gi", "10 Mi", "-", ""])
def test_parse_quantity_rejects_what_the_api_server_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        parse_quantity(bad)


def test_quantity_bytes_rounds_up() -> None:
    assert quantity_bytes("100m") == 1
    assert quantity_bytes("64Mi") == 67108864


@pytest.mark.parametrize("filename", EXAMPLE_FILES)
def test_every_example_round_trips_through_the_model(filename: str) -> None:
    example = load_example(filename)
    kind = KIND_BY_NAME[example["kind"]]
    obj = kind.from_api(example)
    assert obj.to_api() == example


def test_python_names_are_snake_case_and_the_wire_is_camel_case() -> None:
    vm = VirtualMachine(
        metadata=ObjectMeta(name="a"),
        spec=VirtualMachineSpec(
            memory="64Mi", run_strategy="Running", disks=[DiskSpec(name="root", size="1Gi", boot_order=1)]
        ),
    )
    wire = vm.to_api()
    assert wire["spec"] == {
        "memory": "64Mi",
        "runStrategy": "Running",
        "disks": [{"name": "root", "size": "1Gi", "bootOrder": 1}],
    }
    assert wire["apiVersion"] == "vapor.io/v1alpha1" and wire["kind"] == "VirtualMachine"


def test_model_reads_objects_written_by_a_newer_schema() -> None:
    """A component must not crash on a field a newer CRD added."""
    obj = {
        "apiVersion": "vapor.io/v1alpha1",
        "kind": "Mount",
        "metadata": {"name": "m"},
        "spec": {"host": "h", "device": "/dev/vdb", "mountPoint": "/srv", "filesystem": "xfs", "future": 1},
    }
    assert Mount.from_api(obj).spec.mount_point == "/srv"


@pytest.fixture(scope="module")
def api(control_plane: ControlPlane) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(config.new_client_from_config(str(control_plane.kubeconfig)))


def _create(api: client.CustomObjectsApi, kind: type[Resource], body: dict[str, Any], namespace: str) -> dict[str, Any]:  # type: ignore[type-arg]
    if kind.namespaced():
        return dict(api.create_namespaced_custom_object(kind.group, kind.version, namespace, kind.plural(), body))
    return dict(api.create_cluster_custom_object(kind.group, kind.version, kind.plural(), body))


def _delete(api: client.CustomObjectsApi, kind: type[Resource], name: str, namespace: str) -> None:  # type: ignore[type-arg]
    if kind.namespaced():
        api.delete_namespaced_custom_object(kind.group, kind.version, namespace, kind.plural(), name)
    else:
        api.delete_cluster_custom_object(kind.group, kind.version, kind.plural(), name)


@pytest.mark.parametrize("filename", EXAMPLE_FILES)
def test_every_example_round_trips_through_the_api_server(
    api: client.CustomObjectsApi,
    namespace: str,
    unique,
    filename: str,
) -> None:
    """The model reads what the server stores, and writes it back unchanged."""
    example = load_example(filename)
    kind = KIND_BY_NAME[example["kind"]]
    body = kind.from_api(example).to_api()
    body["metadata"]["name"] = unique(body["metadata"]["name"])
    stored = _create(api, kind, body, namespace)
    try:
        obj = kind.from_api(stored)
        assert obj.metadata.uid == stored["metadata"]["uid"]
        assert obj.to_api() == stored  # defaults, metadata and managedFields included
    finally:
        _delete(api, kind, body["metadata"]["name"], namespace)


def test_status_written_from_the_model_reads_back(api: client.CustomObjectsApi, namespace: str) -> None:
    vm = VirtualMachine(metadata=ObjectMeta(name="st", namespace=namespace), spec=VirtualMachineSpec(memory="32Mi"))
    _create(api, VirtualMachine, vm.to_api(), namespace)
    status = VirtualMachineStatus(
        phase="Running",
        host="node-1",
        domain_uuid="5c7a3e0e-6f2e-4f0e-9b3e-1c2d3e4f5a6b",
        conditions=[
            Condition(
                type="Ready",
                status="True",
                reason="DomainRunning",
                message="running",
                last_transition_time="2026-11-25T10:00:00Z",
            )
        ],
    )
    api.patch_namespaced_custom_object_status(
        VirtualMachine.group,
        VirtualMachine.version,
        namespace,
        VirtualMachine.plural(),
        "st",
        {"status": status.to_api()},
    )
    back = VirtualMachine.from_api(
        api.get_namespaced_custom_object(
            VirtualMachine.group, VirtualMachine.version, namespace, VirtualMachine.plural(), "st"
        )
    )
    assert back.status is not None
    assert back.status.phase == "Running" and back.status.domain_uuid == status.domain_uuid
    assert back.status.conditions is not None and back.status.conditions[0].reason == "DomainRunning"
    assert back.spec.run_strategy == "Halted"  # the server's default, read through the model


def test_every_kind_names_its_crd() -> None:
    assert [k.crd_name() for k in KINDS] == [
        "hosts.vapor.io",
        "virtualmachines.vapor.io",
        "migrations.vapor.io",
        "mounts.vapor.io",
        "images.vapor.io",
        "virtualmachinesnapshots.vapor.io",
        "virtualmachinerestores.vapor.io",
    ]
    assert Host.namespaced() is False and Migration.namespaced() is True


def test_condition_after_moves_the_transition_time_only_on_a_status_change() -> None:
    then = datetime(2026, 1, 1, tzinfo=UTC)
    current = Condition(type="Ready", status="True", reason="A", message="a", last_transition_time=then)
    same = Condition.after(current, type="Ready", status="True", reason="B", message="b", observed_generation=3)
    assert same.last_transition_time == then and same.reason == "B" and same.observed_generation == 3
    flipped = Condition.after(current, type="Ready", status="False", reason="B", message="b")
    assert flipped.last_transition_time is not None and flipped.last_transition_time > then
    first = Condition.after(None, type="Ready", status="True", reason="A", message="x" * 40000)
    assert first.last_transition_time is not None and len(first.message) == 32768  # cut to what the schema takes


def test_resource_condition_after_reads_its_own_condition_and_generation() -> None:
    then = datetime(2026, 1, 1, tzinfo=UTC)
    vm = VirtualMachine(
        metadata=ObjectMeta(name="v", generation=7),
        spec=VirtualMachineSpec(memory="32Mi"),
        status=VirtualMachineStatus(
            conditions=[Condition(type="Scheduled", status="False", reason="X", last_transition_time=then)]
        ),
    )
    kept = vm.condition_after("Scheduled", "False", "Unschedulable", "no room")
    assert kept.last_transition_time == then and kept.observed_generation == 7
    assert vm.condition_after("Scheduled", "False", "X", "", observe=False).observed_generation is None


def test_predicates_live_on_the_model() -> None:
    m = Migration(metadata=ObjectMeta(name="m"), spec=MigrationSpec(vm_name="v"))
    assert m.phase is None and not m.is_terminal and not m.is_active
    for phase, terminal, active in (
        ("Scheduling", False, False),
        ("Running", False, True),
        ("PreparingTarget", False, True),
        ("Cancelled", True, False),
        ("Succeeded", True, False),
    ):
        m.status = MigrationStatus(phase=phase)
        assert (m.is_terminal, m.is_active) == (terminal, active), phase
    vm = VirtualMachine(metadata=ObjectMeta(name="v"), spec=VirtualMachineSpec(memory="32Mi"))
    assert not vm.can_live_migrate and vm.host is None
    for phase, live in (("Running", True), ("Paused", True), ("Stopped", False), ("Migrating", False)):
        vm.status = VirtualMachineStatus(phase=phase, host="h")
        assert vm.can_live_migrate is live and vm.host == "h", phase
    host = Host(metadata=ObjectMeta(name="h1"), status=HostStatus(id="9d1c8d8e-0000-4000-8000-000000000001"))
    assert not host.is_ready
    host.status = host.status.model_copy(update={"conditions": [Condition(type="Ready", status="True")]})
    assert host.is_ready
    other = Host(metadata=ObjectMeta(name="9d1c8d8e-0000-4000-8000-000000000001"))
    assert find_host([host, other], "h1") is host
    assert find_host([host, other], "9d1c8d8e-0000-4000-8000-000000000001") is other  # a name wins over an id
    assert find_host([host], "9d1c8d8e-0000-4000-8000-000000000001") is host
    assert find_host([host], "nope") is None


def test_partial_models_dump_only_what_was_set() -> None:
    assert MigrationSpec.partial(cancel=True).to_api() == {"cancel": True}
    with pytest.raises(ValidationError):
        MigrationSpec.partial(cancel="not a bool")
    status = VirtualMachineStatus(host="h1", host_id=None, migration=None)
    assert status.to_api() == {"host": "h1", "hostId": None, "migration": None}  # merge patch: null removes
    assert status.to_apply() == {"host": "h1"}  # apply: what is owned, nothing else

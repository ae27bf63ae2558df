"""The operator's migration decisions as plain functions: queue order, limits, checks, compatibility."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from vapor.model import Host, Migration, VirtualMachine
from vapor.rules.migrations import check, cpu_compatibility, plan_queue, storage_compatibility
from vapor.rules.placement import Request

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def migration(name: str, vm: str, *, phase: str | None = None, source: str | None = None, second: int = 0,
              **spec: Any) -> Migration:  # fmt: skip
    status: dict[str, Any] = {}
    if phase:
        status["phase"] = phase
    if source:
        status["sourceHost"] = source
    return Migration.from_api(
        {
            "apiVersion": "vapor.io/v1alpha1",
            "kind": "Migration",
            "metadata": {"name": name, "namespace": "ns", "uid": str(uuid.uuid4()),
                         "creationTimestamp": (T0 + dt.timedelta(seconds=second)).isoformat()},
            "spec": {"vmName": vm, **spec},
            "status": status,
        }
    )  # fmt: skip


def host(name: str, *, ready: bool = True, memory: str = "8Gi", features: list[str] | None = None,
         maintenance: bool = False) -> Host:  # fmt: skip
    status: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "capacity": {"cpu": 8, "memory": memory},
        "conditions": [{"type": "Ready", "status": "True" if ready else "False", "reason": "T"}],
    }
    if features is not None:
        status["hypervisor"] = {"arch": "x86_64", "cpuModel": "Skylake", "cpuFeatures": features}
    return Host.from_api({"apiVersion": "vapor.io/v1alpha1", "kind": "Host", "metadata": {"name": name},
                          "spec": {"maintenance": maintenance}, "status": status})  # fmt: skip


def vm(name: str, on: str | None, phase: str = "Running", **spec: Any) -> VirtualMachine:
    return VirtualMachine.from_api(
        {"apiVersion": "vapor.io/v1alpha1", "kind": "VirtualMachine",
         "metadata": {"name": name, "namespace": "ns", "uid": str(uuid.uuid4())},
         "spec": {"memory": "1Gi", **spec}, "status": {"phase": phase, "host": on}}
    )  # fmt: skip


def test_queue_admits_in_creation_order_within_both_limits() -> None:
    queued = [migration(f"m{i}", f"vm{i}", phase="Scheduling", source=f"h{i // 2}", second=10 - i) for i in range(7)]
    # created in reverse name order: m6 first
    plan = plan_queue(queued, parallel=5, per_host=2)
    assert [m.name for m in plan.admit] == ["m6", "m5", "m4", "m3", "m2"]
    by_uid = {m.metadata.uid: m.name for m in queued}
    assert {by_uid[u]: p for u, p in plan.positions.items()} == {"m1": 1, "m0": 2}


def test_a_busy_source_does_not_hold_back_the_queue() -> None:
    running = [migration(f"r{i}", f"x{i}", phase="Running", source="busy") for i in range(2)]
    waiting = [
        migration("a", "va", phase="Scheduling", source="busy", second=1),
        migration("b", "vb", phase="Scheduling", source="calm", second=2),
    ]
    plan = plan_queue(running + waiting, parallel=5, per_host=2)
    assert [m.name for m in plan.admit] == ["b"]
    (uid,) = plan.positions
    assert "leaving host busy" in plan.reasons[uid]


def test_cpu_compatibility_wants_every_source_feature() -> None:
    assert cpu_compatibility(host("a", features=["avx2"]), host("b", features=["avx2", "sse4"]))[0] == "True"
    status, reason, message = cpu_compatibility(host("a", features=["avx2", "sse4"]), host("b", features=["sse4"]))
    assert (status, reason) == ("False", "FeaturesMissing") and "avx2" in message
    assert cpu_compatibility(host("a"), host("b", features=[]))[0] == "Unknown"


def test_storage_needs_a_copy_for_local_disks() -> None:
    local = vm("db", "a", disks=[{"name": "root", "size": "1Gi"}])
    shared = vm("db", "a", disks=[{"name": "root", "path": "/shared/db.qcow2"}])
    assert storage_compatibility(local, "none")[:2] == ("False", "LocalDisks")
    assert storage_compatibility(local, "incremental")[0] == "True"
    assert storage_compatibility(shared, "none")[:2] == ("True", "SharedStorage")


def test_check_counts_what_is_arriving_on_the_destination() -> None:
    hosts = [host("a"), host("b", memory="2Gi")]
    m = migration("m", "web", destinationHost="b")
    web = vm("web", "a")
    placed = {"b": [Request(cpu=1, memory=2**30)]}
    assert check(m, web, hosts, {}, []).refusal is None
    refused = check(m, web, hosts, {"b": placed["b"] * 2}, [])
    assert refused.refusal and "DestinationCapacity" in refused.refusal


def test_check_picks_the_roomiest_other_host_when_none_is_named() -> None:
    hosts = [host("a"), host("b", memory="2Gi"), host("c", memory="16Gi"), host("d", ready=False, memory="64Gi")]
    result = check(migration("m", "web"), vm("web", "a"), hosts, {}, [])
    assert result.refusal is None and result.destination is not None and result.destination.name == "c"


def test_a_queued_migration_blocks_a_second_one_of_the_same_vm() -> None:
    hosts = [host("a"), host("b")]
    first = migration("first", "web", phase="Scheduling", destinationHost="b")
    second = migration("second", "web", destinationHost="b")
    result = check(second, vm("web", "a"), hosts, {}, [first, second])
    assert result.refusal == "VirtualMachine web already has an active migration: first"

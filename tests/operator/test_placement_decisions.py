"""The placement decision alone (vapor.rules.placement), called directly as the handlers call it."""

from __future__ import annotations

from vapor.model import (
    Condition,
    Host,
    HostSpec,
    HostStatus,
    ObjectMeta,
    VirtualMachine,
    VirtualMachineSpec,
    VirtualMachineStatus,
)
from vapor.model.host import HostCapacity
from vapor.rules.placement import HostFacts, Request, allocatable, choose_host


def host(name: str, cpu: int = 8, memory: str = "8Gi", ready: bool = True, **kw: object) -> Host:
    return Host(
        metadata=ObjectMeta(name=name, labels=kw.get("labels")),  # type: ignore[arg-type]
        spec=HostSpec(maintenance=bool(kw.get("maintenance", False))),
        status=HostStatus(
            id=f"00000000-0000-0000-0000-{abs(hash(name)) % 10**12:012d}",
            capacity=HostCapacity(cpu=cpu, memory=memory),
            conditions=[Condition(type="Ready", status="True" if ready else "False")],
        ),
    )


def vm(cpu: int = 1, memory: str = "1Gi", **spec: object) -> VirtualMachine:
    return VirtualMachine(
        metadata=ObjectMeta(name="v", namespace="d"), spec=VirtualMachineSpec(cpu=cpu, memory=memory, **spec)
    )  # type: ignore[arg-type]


def test_picks_the_host_with_most_memory_free() -> None:
    decision = choose_host(vm(), [host("a", memory="4Gi"), host("b", memory="16Gi")], {})
    assert decision.host is not None and decision.host.name == "b"


def test_counts_what_placed_vms_already_take() -> None:
    placed = {"b": [Request(cpu=1, memory=15 * 2**30)]}
    decision = choose_host(vm(), [host("a", memory="4Gi"), host("b", memory="16Gi")], placed)
    assert decision.host is not None and decision.host.name == "a"


def test_not_ready_maintenance_selector_and_capacity_each_rule_a_host_out() -> None:
    hosts = [
        host("down", ready=False),
        host("busy", maintenance=True),
        host("small", cpu=1),
        host("other-rack", labels={"rack": "r2"}),
    ]
    decision = choose_host(vm(cpu=11, host_selector={"rack": "r1"}), hosts, {})
    assert decision.host is None
    assert "down: not Ready" in decision.message
    assert "busy: in maintenance" in decision.message
    # 1 logical CPU gives 10 vCPUs at the default allocation ratio
    assert "small:" in decision.message and "10 CPU free, 11 needed" in decision.message
    assert "other-rack: label rack=r1 missing" in decision.message


def test_pinned_host_is_the_only_candidate() -> None:
    decision = choose_host(vm(host="a"), [host("a", memory="2Gi"), host("b", memory="64Gi")], {})
    assert decision.host is not None and decision.host.name == "a"


def test_memory_must_fit_exactly_in_bytes() -> None:
    assert choose_host(vm(memory="1Gi"), [host("a", memory="1Gi")], {}).host is not None
    assert choose_host(vm(memory="1025Mi"), [host("a", memory="1Gi")], {}).host is None


def test_no_hosts_at_all_says_so() -> None:
    assert choose_host(vm(), [], {}).message == "no Host exists yet"


def test_cpu_is_over_committed_by_the_ratio_and_memory_is_not() -> None:
    two_cores = host("a", cpu=2, memory="8Gi")
    nineteen = {"a": [Request(cpu=1, memory=2**20)] * 19}
    assert allocatable(two_cores) == Request(cpu=20, memory=8 * 2**30)  # default ratio 10
    assert choose_host(vm(cpu=1, memory="1Mi"), [two_cores], nineteen).host is not None  # the 20th vCPU
    assert "0 CPU free" in choose_host(vm(cpu=1), [two_cores], {"a": [Request(cpu=1, memory=2**20)] * 20}).message
    assert choose_host(vm(cpu=3), [two_cores], {}, cpu_ratio=1).host is None  # the operator's ratio
    strict = two_cores.model_copy(update={"spec": HostSpec(cpu_allocation_ratio=1)})
    assert allocatable(strict, cpu_ratio=10) == Request(cpu=2, memory=8 * 2**30)  # the Host's own ratio wins
    assert "2 CPU free, 3 needed" in choose_host(vm(cpu=3), [strict], {}).message
    roomy = two_cores.model_copy(update={"spec": HostSpec(cpu_allocation_ratio=4)})
    assert allocatable(roomy, cpu_ratio=1) == Request(cpu=8, memory=8 * 2**30)
    full_memory = {"a": [Request(cpu=1, memory=8 * 2**30)]}
    assert "0Mi memory free, 1Gi needed" in choose_host(vm(cpu=1), [two_cores], full_memory).message


def placed_vm(name: str, on: str | None) -> VirtualMachine:
    return VirtualMachine(
        metadata=ObjectMeta(name=name, namespace="d"),
        spec=VirtualMachineSpec(memory="1Gi"),
        status=VirtualMachineStatus(host=on),
    )


def test_a_clone_goes_to_its_sources_host_even_with_more_room_elsewhere() -> None:
    clone = vm(clone_from={"vm": "golden"})
    decision = choose_host(
        clone, [host("a", memory="2Gi"), host("b", memory="64Gi")], {}, source=placed_vm("golden", "a")
    )
    assert decision.host is not None and decision.host.name == "a"


def test_a_clone_whose_sources_host_is_full_is_not_placed_elsewhere() -> None:
    clone = vm(memory="4Gi", clone_from={"vm": "golden"})
    decision = choose_host(
        clone, [host("a", memory="2Gi"), host("b", memory="64Gi")], {}, source=placed_vm("golden", "a")
    )
    assert decision.host is None
    assert "b: the clone's source golden has its disks on host a" in decision.message
    assert "a: 2Gi memory free, 4Gi needed" in decision.message


def test_a_clone_waits_for_its_source_to_exist_and_be_placed() -> None:
    clone = vm(clone_from={"vm": "golden"})
    missing = choose_host(clone, [host("a")], {}, source=None)
    assert missing.host is None and missing.reason == "CloneSourceNotFound"
    assert "golden does not exist" in missing.message
    unplaced = choose_host(clone, [host("a")], {}, source=placed_vm("golden", None))
    assert unplaced.host is None and unplaced.reason == "CloneSourceNotPlaced"


def test_a_vm_takes_its_live_ceilings_from_its_host() -> None:
    grows = vm(cpu=1, memory="512Mi", max_cpu=4, max_memory="2Gi")
    assert Request.of(grows) == Request(cpu=4, memory=2 * 2**30)
    assert Request.of(vm(cpu=2, memory="1Gi")) == Request(cpu=2, memory=2**30)
    decision = choose_host(grows, [host("a", memory="1Gi"), host("b", memory="4Gi")], {})
    assert decision.host is not None and decision.host.name == "b"  # it may grow to 2Gi live: "a" could not hold it


def test_a_batch_that_reads_host_facts_once_decides_as_each_vm_alone() -> None:
    hosts = [host("a", memory="4Gi"), host("b", memory="16Gi"), host("c", ready=False, memory="64Gi"), host("d")]
    facts = {h.name: HostFacts.of(h) for h in hosts}
    for wanted in (vm(), vm(memory="8Gi"), vm(memory="32Gi"), vm(cpu=500)):
        alone = choose_host(wanted, hosts, {})
        batched = choose_host(wanted, hosts, {}, facts=facts)
        assert (batched.host and batched.host.name, batched.message) == (alone.host and alone.host.name, alone.message)
    assert "c: not Ready" in choose_host(vm(memory="32Gi"), hosts, {}, facts=facts).message

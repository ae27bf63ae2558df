"""The placement decision alone (vapor.operator.placement), called directly as the handlers call it."""

from __future__ import annotations

from vapor.model import Condition, Host, HostSpec, HostStatus, ObjectMeta, VirtualMachine, VirtualMachineSpec
from vapor.model.host import HostCapacity
from vapor.operator.placement import Request, choose_host


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
    decision = choose_host(vm(cpu=2, host_selector={"rack": "r1"}), hosts, {})
    assert decision.host is None
    assert "down: not Ready" in decision.message
    assert "busy: in maintenance" in decision.message
    assert "small:" in decision.message and "1 CPU free, 2 needed" in decision.message
    assert "other-rack: label rack=r1 missing" in decision.message


def test_pinned_host_is_the_only_candidate() -> None:
    decision = choose_host(vm(host="a"), [host("a", memory="2Gi"), host("b", memory="64Gi")], {})
    assert decision.host is not None and decision.host.name == "a"


def test_memory_must_fit_exactly_in_bytes() -> None:
    assert choose_host(vm(memory="1Gi"), [host("a", memory="1Gi")], {}).host is not None
    assert choose_host(vm(memory="1025Mi"), [host("a", memory="1Gi")], {}).host is None


def test_no_hosts_at_all_says_so() -> None:
    assert choose_host(vm(), [], {}).message == "no Host exists yet"

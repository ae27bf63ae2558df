"""The agent's plain decisions, called directly: phases, Ready, write pacing, domain names, the host id."""

from __future__ import annotations

import uuid
from pathlib import Path

import libvirt
import pytest

from vapor.agent._config import parse_args
from vapor.agent.controllers.host import structural
from vapor.agent.controllers.vmstatus import phase_of, ready_of
from vapor.agent.host.domain import VaporMetadata, build_xml, domain_name, key_of_domain, spec_hash
from vapor.agent.host.hostid import load_or_create
from vapor.model import VirtualMachine, names

from ..support.libvirtd import Libvirtd


def vm(**spec: object) -> VirtualMachine:
    return VirtualMachine.from_api(
        {
            "metadata": {"name": "web", "namespace": "prod", "uid": "u-1", "generation": 3},
            "spec": {"memory": "64Mi", **spec},
        }
    )


@pytest.mark.parametrize(
    ("state", "strategy", "stopping", "phase", "ready"),
    [
        (libvirt.VIR_DOMAIN_RUNNING, "Running", False, "Running", "True"),
        (libvirt.VIR_DOMAIN_RUNNING, "Halted", True, "Stopping", "False"),
        (libvirt.VIR_DOMAIN_PAUSED, "Paused", False, "Paused", "True"),
        (libvirt.VIR_DOMAIN_PAUSED, "Running", False, "Paused", "False"),
        (libvirt.VIR_DOMAIN_SHUTOFF, "Halted", False, "Stopped", "True"),
        (libvirt.VIR_DOMAIN_SHUTOFF, "Running", False, "Starting", "False"),
        (libvirt.VIR_DOMAIN_SHUTDOWN, "Halted", False, "Stopping", "False"),
        (libvirt.VIR_DOMAIN_CRASHED, "Running", False, "Failed", "False"),
        (None, "Halted", False, "Stopped", "True"),
    ],
)
def test_phase_and_ready_follow_the_domain_and_the_run_strategy(
    state: int | None, strategy: str, stopping: bool, phase: str, ready: str
) -> None:
    assert phase_of(state, strategy, stopping) == phase
    status, reason, message = ready_of(state, strategy, phase)
    assert (status, reason) == (ready, phase)
    assert strategy in message


def test_volatile_numbers_alone_are_not_a_structural_change() -> None:
    base = {
        "hostname": "a",
        "uptimeSeconds": 10,
        "loadAverage": [0.1, 0.2, 0.3],
        "cpu": {"model": "x", "usagePercent": 3.0},
        "memory": {"total": 100, "available": 50, "used": 50},
        "interfaces": [{"name": "eth0", "addresses": ["192.0.2.1/24"], "statistics": {"rxBytes": 1}}],
        "disks": [{"name": "vda", "partitions": [{"name": "vda1", "used": 1, "available": 2}]}],
    }
    busier = {
        **base,
        "uptimeSeconds": 99,
        "loadAverage": [1.0, 1.0, 1.0],
        "cpu": {"model": "x", "usagePercent": 90.0},
        "memory": {"total": 100, "available": 10, "used": 90},
        "interfaces": [{"name": "eth0", "addresses": ["192.0.2.1/24"], "statistics": {"rxBytes": 1000}}],
        "disks": [{"name": "vda", "partitions": [{"name": "vda1", "used": 2, "available": 1}]}],
    }
    assert structural(base) == structural(busier)
    moved = {**base, "interfaces": [{"name": "eth0", "addresses": ["192.0.2.2/24"], "statistics": {"rxBytes": 1}}]}
    assert structural(base) != structural(moved)
    assert base["uptimeSeconds"] == 10  # the input is left as it was


def test_domain_names_round_trip_and_metadata_parses() -> None:
    assert domain_name("prod", "web") == "prod_web"
    assert key_of_domain("prod_web") == ("prod", "web")
    assert key_of_domain("not-ours") is None
    meta = VaporMetadata("u-1", "prod", "web", "abc")
    assert VaporMetadata.from_xml(meta.to_xml()) == meta
    assert VaporMetadata.from_xml("<vm/>") is None


def test_the_spec_hash_ignores_run_state_but_not_the_machine() -> None:
    assert spec_hash(vm(runStrategy="Running"), "kvm") == spec_hash(vm(runStrategy="Halted"), "kvm")
    assert spec_hash(vm(cpu=1), "kvm") != spec_hash(vm(cpu=2), "kvm")
    assert spec_hash(vm(), "kvm") != spec_hash(vm(), "qemu")


def test_disk_targets_are_named_per_bus(tmp_path: Path) -> None:
    xml = build_xml(
        vm(
            disks=[
                {"name": "a", "size": "1Mi"},
                {"name": "b", "size": "1Mi"},
                {"name": "c", "size": "1Mi", "bus": "sata"},
            ]
        ),
        domain_type="qemu",
        storage_dir=tmp_path,
    )
    assert 'dev="vda"' in xml and 'dev="vdb"' in xml and 'dev="sda"' in xml
    assert str(tmp_path / "u-1" / "a.qcow2") in xml


def test_the_host_id_is_derived_once_and_then_kept(tmp_path: Path) -> None:
    first = load_or_create(tmp_path, "node-a")
    assert uuid.UUID(first) and load_or_create(tmp_path, "node-a") == first
    assert load_or_create(tmp_path / "elsewhere", "node-a") == first  # derived from machine id + node name
    assert load_or_create(tmp_path / "other", "node-b") != first
    (tmp_path / "host-id").write_text(str(uuid.UUID(int=7)))
    assert load_or_create(tmp_path, "node-a") == str(uuid.UUID(int=7))  # a stored id always wins


def test_command_line_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODE_NAME", "n1")
    monkeypatch.delenv("KUBECONFIG", raising=False)
    config = parse_args([])
    assert config.node_name == "n1" and config.kubeconfig is None
    assert config.lease_namespace == names.LEASE_NAMESPACE and config.lease_duration_seconds == 40
    assert config.disks_dir == Path("/var/lib/vapor/disks") and config.reserved_memory == 512 * 2**20
    assert parse_args(["--reserved-memory", "1Gi", "--storage-dir", "/srv"]).disks_dir == Path("/srv")


def test_the_libvirtd_helper_is_idempotent(libvirtd: Libvirtd) -> None:
    again = Libvirtd(libvirtd.uri).start()
    assert again.started == []  # found it running: starts nothing, and will stop nothing
    conn = libvirt.open(libvirtd.uri)
    try:
        assert conn.getType() == "QEMU"
    finally:
        conn.close()


def test_the_status_keeps_what_it_does_not_know_and_its_transition_time() -> None:
    from vapor.agent.controllers import vmstatus as _vmstatus

    current = vm()
    first = _vmstatus.build(current, phase="Running", ready=("True", "Running", "ok"), domain_uuid="d-1")
    sent = first.to_apply()  # what the server-side apply sends
    assert sent["domainUuid"] == "d-1" and sent["observedGeneration"] == 3
    assert "addresses" not in sent and "lastRestartRequest" not in sent  # nothing to say: the field is given up
    stored = VirtualMachine.from_api({**current.to_api(), "status": {**sent, "host": "n1"}})
    again = _vmstatus.build(stored, phase="Running", ready=("True", "Running", "ok"))
    assert again.domain_uuid == "d-1"  # kept from the stored status
    assert "host" not in again.to_apply()  # the operator's field is not the agent's to write
    assert again.conditions and first.conditions
    assert again.conditions[0].last_transition_time == first.conditions[0].last_transition_time
    assert _vmstatus.unchanged(stored, again)
    stopped = _vmstatus.build(stored, phase="Stopping", ready=("False", "Stopping", "no"), restart_done="r1")
    assert not _vmstatus.unchanged(stored, stopped) and stopped.last_restart_request == "r1"


def test_addresses_that_went_away_are_written_away() -> None:
    from vapor.agent.controllers import vmstatus as _vmstatus

    ready = ("True", "Running", "ok")
    seen = _vmstatus.build(vm(), phase="Running", ready=ready, domain_uuid="d-1", addresses=["10.0.0.2"])
    stored = VirtualMachine.from_api({**vm().to_api(), "status": seen.to_apply()})
    assert _vmstatus.unchanged(stored, _vmstatus.build(stored, phase="Running", ready=ready, addresses=["10.0.0.2"]))
    gone = _vmstatus.build(stored, phase="Running", ready=ready)  # the guest lost its lease
    assert not _vmstatus.unchanged(stored, gone) and "addresses" not in gone.to_apply()


def test_kvm_is_used_only_when_qemus_user_may_open_the_device(tmp_path: Path) -> None:
    import grp
    import os

    from vapor.agent.host.hypervisor import kvm_device_usable

    device = tmp_path / "kvm"  # a file with the device's owner and mode stands in for /dev/kvm
    device.write_bytes(b"")
    os.chown(device, 0, 0)
    device.chmod(0o600)
    assert not kvm_device_usable(str(device))  # root only, as a fresh /dev/kvm here: QEMU must use TCG
    os.chown(device, 0, grp.getgrnam("kvm").gr_gid)
    device.chmod(0o660)
    assert kvm_device_usable(str(device))  # group kvm, which QEMU's user belongs to
    assert not kvm_device_usable(str(tmp_path / "missing"))

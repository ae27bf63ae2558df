"""How the hosts' libvirtd reach each other: qemu+tls by default, certificates checked, tcp only when asked.

The guest's memory is looked for on the wire (every frame the target's port
of the testbed bridge carries): the guest's boot sector, with a marker, is in
its RAM, so a migration that sends memory in clear shows the marker.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from vapor.devenv import ControlPlane
from vapor.model.names import HOST_LABEL

from ..conftest import Kubectl
from ..support.capture import Capture
from ..support.hosts import Testbed
from ..support.wait import wait_until
from .conftest import MARKER, Cluster, make_cluster

pytestmark = pytest.mark.migration


@pytest.fixture(scope="module")
def tcp_cluster(control_plane: ControlPlane, kubectl: Kubectl) -> Iterator[Cluster]:
    """Two hosts whose agents were told to migrate over plain qemu+tcp (the dev/test setting)."""
    with make_cluster(control_plane, kubectl, Testbed(2, transport="tcp")) as made:
        yield made


@pytest.fixture(scope="module")
def foreign_cluster(control_plane: ControlPlane, kubectl: Kubectl) -> Iterator[Cluster]:
    """Two TLS hosts, the second with a certificate (and a CA) of its own: not the migration CA of the first."""
    with make_cluster(control_plane, kubectl, Testbed(2, foreign_ca={1})) as made:
        yield made


def _listening(cluster: Cluster, host: int) -> list[str]:
    """The TCP ports host ``host`` listens on, in its own network namespace."""
    netns = cluster.testbed.hosts[host].netns
    out = subprocess.run(["ip", "netns", "exec", netns, "ss", "-ltnH"], capture_output=True, text=True, check=True)
    return sorted(line.split()[3].rpartition(":")[2] for line in out.stdout.splitlines() if line.strip())


def _move_captured(cluster: Cluster, ns: str, vm: str, tmp: Path) -> tuple[dict[str, object], bytes]:
    """Migrate a running VM with MARKER in its memory from host 0 to host 1 while the frames are captured."""
    dom = cluster.domain(0, cluster.running_vm(ns, vm, 0, **cluster.marker_vm_spec()))
    assert dom is not None
    # The firmware has loaded the boot sector (with the marker) into the guest's memory.
    wait_until(lambda: dom.memoryPeek(0x7C04, len(MARKER), libvirt.VIR_MEMORY_PHYSICAL) == MARKER, 60, what="booted")
    with Capture(cluster.testbed.hub, "p1", tmp / "wire.bin") as wire:
        cluster.migrate(ns, f"move-{vm}", vm, 1)
        status = cluster.end(ns, f"move-{vm}")
    return status, wire.data()


def test_a_live_migration_is_encrypted_on_the_wire(cluster: Cluster, vms: str, tmp_path: Path) -> None:
    assert _listening(cluster, 1) == ["16514"]  # libvirtd offers TLS only: no plain 16509
    status, wire = _move_captured(cluster, vms, "secret", tmp_path)
    assert status["phase"] == "Succeeded", status
    assert cluster.running_on(f"{vms}_secret") == [1]
    assert len(wire) > 256 << 10  # the guest's memory (its pages that are not zero) went through the port...
    assert MARKER not in wire  # ...and none of it in clear: QEMU's stream is TLS too (VIR_MIGRATE_TLS)


def test_tcp_is_an_explicit_option_and_sends_memory_in_clear(
    tcp_cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    try:
        assert "16509" in _listening(tcp_cluster, 1)
        status, wire = _move_captured(tcp_cluster, namespace, "plain", tmp_path)
        assert status["phase"] == "Succeeded", status
        host = tcp_cluster.kubectl.get_json("hosts.vapor.io", tcp_cluster.nodes[1])["status"]["hypervisor"]
        assert host["migrationUri"] == f"qemu+tcp://{tcp_cluster.testbed.hosts[1].address}/system"
        assert MARKER in wire  # what the TLS test checks for is really there without TLS
    finally:
        tcp_cluster.clean(namespace)


def test_a_target_without_a_certificate_from_the_migration_ca_is_refused(
    foreign_cluster: Cluster, namespace: str
) -> None:
    cl = foreign_cluster
    try:
        dom = cl.running_vm(namespace, "stay", 0)
        cl.migrate(namespace, "to-foreign", "stay", 1)
        status = cl.end(namespace, "to-foreign")
        assert status["phase"] == "Failed", status
        completed = {c["type"]: c for c in status["conditions"]}["Completed"]  # type: ignore[attr-defined]
        assert completed["status"] == "False" and completed["reason"] == "TLSFailed", completed
        reason = str(status["failureReason"])
        assert "certificate" in reason and cl.testbed.hosts[1].address in reason, reason
        assert cl.running_on(dom) == [0] and cl.domain(1, dom) is None
        vm = cl.vm(namespace, "stay")
        assert vm["metadata"]["labels"][HOST_LABEL] == cl.nodes[0]
    finally:
        cl.clean(namespace)


def test_a_source_without_a_certificate_from_the_migration_ca_is_refused(
    foreign_cluster: Cluster, namespace: str
) -> None:
    """The foreign host trusts the CA, so only the target's check of the client's certificate stops it."""
    cl = foreign_cluster
    try:
        dom = cl.running_vm(namespace, "out", 1)
        cl.migrate(namespace, "from-foreign", "out", 0)
        status = cl.end(namespace, "from-foreign")
        assert status["phase"] == "Failed", status
        completed = {c["type"]: c for c in status["conditions"]}["Completed"]  # type: ignore[attr-defined]
        assert completed["reason"] == "TLSFailed", completed
        assert cl.running_on(dom) == [1] and cl.domain(0, dom) is None
    finally:
        cl.clean(namespace)


def test_the_target_is_dialled_at_its_address_never_at_a_published_uri(cluster: Cluster, vms: str) -> None:
    """A migrationUri changed by any writer of the Host's status does not choose where the VM goes."""
    dom = cluster.running_vm(vms, "addr", 0)
    target = cluster.nodes[1]
    patch = {"status": {"hypervisor": {"migrationUri": "qemu+tcp://192.0.2.1/system"}}}
    cluster.kubectl("patch", "hosts.vapor.io", target, "--subresource=status", "--type=merge", "-p", json.dumps(patch))
    cluster.migrate(vms, "move-addr", "addr", 1)
    status = cluster.end(vms, "move-addr")
    assert status["phase"] == "Succeeded", status
    wait_until(lambda: cluster.running_on(dom) == [1], 30, what="the VM on the target")

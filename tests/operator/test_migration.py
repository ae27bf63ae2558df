"""The operator's side of live migration against the real API server.

No agent runs here: hosts are Host objects kept Ready by the heartbeat
stand-in, and the agents' status writes (TargetReady, Completed, progress)
come from the named stand-in tests/support/migration_agents.py. What the
operator decides (checks, pre-flight conditions, limits and queue, phases,
the VM's placement, drain) is all real; tests/migration moves real domains.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from vapor.devenv import ControlPlane

from ..conftest import Kubectl
from ..support.migration_agents import AgentConditionsStandIn
from ..support.processes import ComponentProcess
from ..support.wait import wait_until
from .test_operator import Fleet, condition, vm_status

pytestmark = pytest.mark.usefixtures("operator")

ANNOTATION = "vapor.io/migration"
FINALIZER = "vapor.io/migration-cleanup"


@pytest.fixture(scope="module")
def operator(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComponentProcess]:
    log: Path = tmp_path_factory.mktemp("operator-migration") / "operator.log"
    proc = ComponentProcess(
        "vapor.operator",
        ["--kubeconfig", str(control_plane.kubeconfig)],
        log,
        env={
            "VAPOR_HEALTH_INTERVAL": "1",
            "VAPOR_PLACEMENT_RETRY_INTERVAL": "1",
            "VAPOR_MIGRATION_INTERVAL": "1",
            "VAPOR_MIGRATION_SOURCE_LOST_GRACE": "3",
        },
    ).start()
    yield proc
    proc.stop()


@pytest.fixture
def fleet(kubectl: Kubectl, api: client.ApiClient) -> Iterator[Fleet]:
    f = Fleet(kubectl, api)
    yield f
    f.cleanup()


@pytest.fixture
def agents(api: client.ApiClient) -> Iterator[AgentConditionsStandIn]:
    stand_in = AgentConditionsStandIn(api)
    yield stand_in
    stand_in.stop()


class Scene:
    """One test's VMs and Migrations in its namespace."""

    def __init__(self, kubectl: Kubectl, fleet: Fleet, namespace: str) -> None:
        self.kubectl = kubectl
        self.fleet = fleet
        self.ns = namespace

    def vm(self, name: str, host: str, *, phase: str = "Running", memory: str = "256Mi", **spec: Any) -> str:
        """A VM pinned to ``host``, its phase written as its agent would."""
        manifest = self.fleet.vm_manifest(name, self.ns, cpu=1, memory=memory, host=host, **spec)
        manifest["spec"]["runStrategy"] = "Running" if phase == "Running" else "Halted"
        self.kubectl.apply(manifest)
        wait_until(lambda: vm_status(self.kubectl, name, self.ns).get("host") == host, 30, what=f"{name} on {host}")
        self.kubectl(
            "patch", "vvm", name, "-n", self.ns, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": {"phase": phase}}),
        )  # fmt: skip
        return name

    def migrate(self, name: str, vm: str, dest: str | None = None, **spec: Any) -> str:
        body: dict[str, Any] = {"vmName": vm, **spec}
        if dest:
            body["destinationHost"] = dest
        self.kubectl.apply(
            {"apiVersion": "vapor.io/v1alpha1", "kind": "Migration", "metadata": {"name": name, "namespace": self.ns},
             "spec": body}
        )  # fmt: skip
        return name

    def get(self, name: str) -> dict[str, Any]:
        return self.kubectl.get_json("vmig", name, "-n", self.ns)

    def status(self, name: str) -> dict[str, Any]:
        return self.get(name).get("status") or {}

    def wait_phase(self, name: str, phase: str, timeout: float = 30) -> dict[str, Any]:
        return wait_until(lambda: (s := self.status(name)).get("phase") == phase and s, timeout, what=f"{name} {phase}")

    def vm_obj(self, name: str) -> dict[str, Any]:
        return self.kubectl.get_json("vvm", name, "-n", self.ns)

    def events(self, reason: str | None = None) -> list[dict[str, Any]]:
        args = ["get", "events.events.k8s.io", "-n", self.ns, "-o", "json"]
        items = json.loads(self.kubectl(*args).stdout)["items"]
        if reason:
            items = [e for e in items if e.get("reason") == reason]
        return sorted(items, key=lambda e: e.get("eventTime") or "")

    def wait_unmarked(self, vm: str) -> dict[str, Any]:
        """The VM once its migration annotation is gone (the operator removes it right after the end phase)."""
        return wait_until(
            lambda: ANNOTATION not in ((v := self.vm_obj(vm))["metadata"].get("annotations") or {}) and v,
            20,
            what=f"{vm} without {ANNOTATION}",
        )

    def gone(self, name: str) -> bool:
        result = self.kubectl("get", "vmig", name, "-n", self.ns, check=False)
        return result.returncode != 0 and "NotFound" in result.stderr


@pytest.fixture
def scene(kubectl: Kubectl, fleet: Fleet, namespace: str) -> Scene:
    return Scene(kubectl, fleet, namespace)


def test_phases_in_order_and_the_vm_moves(scene: Scene, fleet: Fleet, agents: AgentConditionsStandIn) -> None:
    src = fleet.host("src", cpu=4, memory="4Gi")
    dst = fleet.host("dst", cpu=4, memory="4Gi")
    scene.vm("web", src)
    scene.migrate("web-move", "web", dst)
    status = scene.wait_phase("web-move", "PreparingTarget")
    assert (status["sourceHost"], status["targetHost"]) == (src, dst)
    for ctype in ("DestinationCapacity", "CPUCompatible", "StorageCompatible"):
        assert condition(status, ctype)["status"] in ("True", "Unknown"), ctype
    assert condition(status, "DestinationCapacity")["status"] == "True"
    obj = scene.get("web-move")
    assert obj["metadata"]["labels"]["vapor.io/source-host"] == src
    assert obj["metadata"]["labels"]["vapor.io/target-host"] == dst
    assert FINALIZER in obj["metadata"]["finalizers"]
    vm = scene.vm_obj("web")
    assert vm["metadata"]["annotations"][ANNOTATION] == "web-move"
    assert vm["status"]["host"] == src  # nothing moves before the agents say so

    agents.target_ready(scene.ns, "web-move")
    scene.wait_phase("web-move", "Running")
    agents.completed(scene.ns, "web-move")
    status = scene.wait_phase("web-move", "Succeeded")
    assert status["downtimeMs"] == 12 and status["progress"]["percent"] == 100

    vm = scene.vm_obj("web")
    assert vm["status"]["host"] == dst
    assert vm["status"]["hostId"] == scene.kubectl.get_json("host", dst)["status"]["id"]
    assert vm["metadata"]["labels"]["vapor.io/host"] == dst
    # Then (in this order) the VM's annotation and the Migration's finalizer go.
    wait_until(lambda: ANNOTATION not in (scene.vm_obj("web")["metadata"].get("annotations") or {}), 20)
    wait_until(lambda: FINALIZER not in (scene.get("web-move")["metadata"].get("finalizers") or []), 20)
    reasons = [e["reason"] for e in scene.events() if e["regarding"]["name"] == "web-move"]
    ordered = ["MigrationChecked", "MigrationStarted", "MigrationRunning", "MigrationSucceeded"]
    assert [r for r in reasons if r in ordered] == ordered
    assert scene.events("Migrated")  # and on the VM
    table = scene.kubectl("get", "vmig", "web-move", "-n", scene.ns).stdout
    assert "Succeeded" in table and dst in table


def test_refusals_say_why(scene: Scene, fleet: Fleet) -> None:
    src = fleet.host("src", cpu=4, memory="4Gi")
    dst = fleet.host("dst", cpu=4, memory="4Gi")
    silent = fleet.host("silent", cpu=4, memory="4Gi", ready=False)
    tiny = fleet.host("tiny", cpu=4, memory="128Mi")
    resting = fleet.host("resting", cpu=4, memory="4Gi", maintenance=True)
    scene.vm("web", src)
    scene.vm("idle", src, phase="Stopped")
    cases = {
        "ghost": ("nothing", dst, "does not exist"),
        "stopped": ("idle", dst, "live migration needs a running VM"),
        "notready": ("web", silent, "is not Ready"),
        "full": ("web", tiny, "memory free"),
        "same": ("web", src, "same host"),
        "nowhere": ("web", "no-such-host", "destination host no-such-host does not exist"),
        "maint": ("web", resting, "in maintenance"),
    }
    for name, (vm, dest, _) in cases.items():
        scene.migrate(name, vm, dest)
    for name, (_, _, words) in cases.items():
        status = scene.wait_phase(name, "Failed")
        assert words in status["failureReason"], (name, status["failureReason"])
    assert condition(scene.status("full"), "DestinationCapacity")["status"] == "False"
    refused = {e["regarding"]["name"] for e in scene.events("MigrationRefused") if e["type"] == "Warning"}
    assert refused >= set(cases)
    assert ANNOTATION not in (scene.vm_obj("web")["metadata"].get("annotations") or {})

    # A VM has at most one active migration: the second one is refused.
    scene.migrate("first", "web", dst)
    scene.wait_phase("first", "PreparingTarget")
    scene.migrate("second", "web", dst)
    status = scene.wait_phase("second", "Failed")
    assert "already has an active migration: first" in status["failureReason"]
    assert scene.status("first")["phase"] == "PreparingTarget"


def test_pre_flight_conditions(scene: Scene, fleet: Fleet, kubectl: Kubectl) -> None:
    def hypervisor(host: str, features: list[str]) -> None:
        patch = {"status": {"hypervisor": {"arch": "x86_64", "cpuModel": "Skylake", "cpuVendor": "Intel",
                                           "cpuFeatures": features}}}  # fmt: skip
        kubectl("patch", "host", host, "--subresource=status", "--type=merge", "-p", json.dumps(patch))

    src = fleet.host("src", cpu=8, memory="8Gi")
    poor = fleet.host("poor", cpu=8, memory="8Gi")
    rich = fleet.host("rich", cpu=8, memory="8Gi")
    hypervisor(src, ["avx2", "vmx"])
    hypervisor(poor, ["vmx"])
    hypervisor(rich, ["avx2", "vmx", "avx512f"])
    scene.vm("web", src)
    scene.vm("db", src, disks=[{"name": "root", "size": "1Gi"}])

    scene.migrate("to-poor", "web", poor)
    status = scene.wait_phase("to-poor", "Failed")
    cpu = condition(status, "CPUCompatible")
    assert cpu["status"] == "False" and cpu["reason"] == "FeaturesMissing" and "avx2" in cpu["message"]
    assert "CPUCompatible" in status["failureReason"]

    scene.migrate("local-disk", "db", rich)
    status = scene.wait_phase("local-disk", "Failed")
    storage = condition(status, "StorageCompatible")
    assert storage["status"] == "False" and storage["reason"] == "LocalDisks" and "copyStorage" in storage["message"]

    scene.migrate("copied", "db", rich, copyStorage="all")
    status = scene.wait_phase("copied", "PreparingTarget")
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "DestinationCapacity": "True",
        "CPUCompatible": "True",
        "StorageCompatible": "True",
    }
    assert condition(status, "StorageCompatible")["reason"] == "CopyStorage"
    assert condition(status, "CPUCompatible")["reason"] == "SameModel"


def test_limits_queue_in_order_and_slots_are_given_on(
    scene: Scene, fleet: Fleet, agents: AgentConditionsStandIn
) -> None:
    sources = [fleet.host(f"s{i}", cpu=8, memory="8Gi") for i in range(4)]
    dst = fleet.host("dst", cpu=32, memory="32Gi")
    layout = [0, 0, 1, 1, 2, 2, 3]  # two VMs on each of three hosts, one on the fourth
    for i, s in enumerate(layout):
        scene.vm(f"vm{i}", sources[s])
    for i in range(7):
        scene.migrate(f"q{i}", f"vm{i}", dst)
    for i in range(5):
        scene.wait_phase(f"q{i}", "PreparingTarget")
    for i, position in ((5, 1), (6, 2)):
        status = wait_until(
            lambda i=i: (s := scene.status(f"q{i}")).get("queuePosition") and s, 30, what=f"q{i} queued"
        )
        assert status["phase"] == "Scheduling" and status["queuePosition"] == position
    assert "5 migrations running" in scene.events("MigrationQueued")[0]["note"]

    # One ends: the first in the queue takes its slot, the other moves up.
    agents.target_ready(scene.ns, "q0")
    scene.wait_phase("q0", "Running")
    agents.completed(scene.ns, "q0")
    scene.wait_phase("q0", "Succeeded")
    scene.wait_phase("q5", "PreparingTarget")
    wait_until(lambda: scene.status("q6").get("queuePosition") == 1, 30, what="q6 first in queue")
    assert scene.status("q6")["phase"] == "Scheduling"


def test_a_vm_created_while_a_migration_is_admitted_does_not_take_its_room(
    scene: Scene, fleet: Fleet, agents: AgentConditionsStandIn, kubectl: Kubectl
) -> None:
    src = fleet.host("src", cpu=4, memory="1Gi")
    dst = fleet.host("dst", cpu=4, memory="1Gi")
    scene.vm("mover", src, memory="768Mi")
    scene.migrate("move", "mover", dst)
    scene.wait_phase("move", "PreparingTarget")
    # dst is promised the 768Mi arriving; src still holds the mover: neither has 512Mi free.
    kubectl.apply(fleet.vm_manifest("late", scene.ns, cpu=1, memory="512Mi"))
    status = wait_until(
        lambda: (s := vm_status(kubectl, "late", scene.ns)).get("phase") == "Unschedulable" and s,
        30,
        what="late Unschedulable",
    )
    message = condition(status, "Scheduled")["message"]
    assert f"{dst}: 256Mi memory free, 512Mi needed" in message and f"{src}: 256Mi memory free" in message
    allocated = wait_until(
        lambda: kubectl.get_json("host", dst)["status"].get("allocated", {}).get("memory") == 768 * 2**20, 20
    )
    assert allocated
    assert vm_status(kubectl, "late", scene.ns).get("host") is None
    # Once the VM has moved, its old host has room and the late VM lands there.
    agents.target_ready(scene.ns, "move")
    scene.wait_phase("move", "Running")
    agents.completed(scene.ns, "move")
    scene.wait_phase("move", "Succeeded")
    assert wait_until(lambda: vm_status(kubectl, "late", scene.ns).get("host"), 30, what="late placed") == src


def test_two_outbound_per_host_and_cancel_while_queued(scene: Scene, fleet: Fleet) -> None:
    src = fleet.host("busy", cpu=8, memory="8Gi")
    dst = fleet.host("dst", cpu=8, memory="8Gi")
    for i in range(3):
        scene.vm(f"vm{i}", src)
        scene.migrate(f"out{i}", f"vm{i}", dst)
    scene.wait_phase("out0", "PreparingTarget")
    scene.wait_phase("out1", "PreparingTarget")
    status = wait_until(lambda: (s := scene.status("out2")).get("queuePosition") and s, 30, what="out2 queued")
    assert status["phase"] == "Scheduling" and status["queuePosition"] == 1
    assert any(f"leaving host {src}" in e["note"] for e in scene.events("MigrationQueued"))

    scene.kubectl("patch", "vmig", "out2", "-n", scene.ns, "--type=merge", "-p", '{"spec":{"cancel":true}}')
    status = scene.wait_phase("out2", "Cancelled")
    assert "queuePosition" not in status


def test_cancel_before_running_is_done_by_the_operator(scene: Scene, fleet: Fleet) -> None:
    src = fleet.host("src", cpu=4, memory="4Gi")
    dst = fleet.host("dst", cpu=4, memory="4Gi")
    scene.vm("web", src)
    scene.migrate("m", "web", dst)
    scene.wait_phase("m", "PreparingTarget")
    scene.kubectl("patch", "vmig", "m", "-n", scene.ns, "--type=merge", "-p", '{"spec":{"cancel":true}}')
    scene.wait_phase("m", "Cancelled")
    wait_until(lambda: FINALIZER not in (scene.get("m")["metadata"].get("finalizers") or []), 20, what="finalizer")
    vm = scene.vm_obj("web")
    assert vm["status"]["host"] == src and ANNOTATION not in (vm["metadata"].get("annotations") or {})
    assert scene.events("MigrationCancelled")


def test_cancel_while_running_waits_for_the_source_agent(
    scene: Scene, fleet: Fleet, agents: AgentConditionsStandIn
) -> None:
    src = fleet.host("src", cpu=4, memory="4Gi")
    dst = fleet.host("dst", cpu=4, memory="4Gi")
    scene.vm("web", src)
    scene.migrate("m", "web", dst)
    scene.wait_phase("m", "PreparingTarget")
    agents.target_ready(scene.ns, "m")
    scene.wait_phase("m", "Running")
    scene.kubectl("patch", "vmig", "m", "-n", scene.ns, "--type=merge", "-p", '{"spec":{"cancel":true}}')
    # Only the source agent can abort libvirt's job: the phase stays Running until it reports.
    agents.completed(scene.ns, "m", ok=False, reason="Aborted", message="migration job aborted on request")
    status = scene.wait_phase("m", "Cancelled")
    assert "Aborted" in status["failureReason"]
    vm = scene.wait_unmarked("web")
    assert vm["status"]["host"] == src and vm["metadata"]["labels"]["vapor.io/host"] == src


def test_kubectl_delete_of_a_running_migration_waits_for_the_abort(
    scene: Scene, fleet: Fleet, agents: AgentConditionsStandIn
) -> None:
    src = fleet.host("src", cpu=4, memory="4Gi")
    dst = fleet.host("dst", cpu=4, memory="4Gi")
    scene.vm("web", src)
    scene.migrate("m", "web", dst)
    scene.wait_phase("m", "PreparingTarget")
    agents.target_ready(scene.ns, "m")
    scene.wait_phase("m", "Running")
    scene.kubectl("delete", "vmig", "m", "-n", scene.ns, "--wait=false")
    obj = scene.get("m")  # the finalizer holds it while libvirt's job may still run
    assert obj["metadata"].get("deletionTimestamp") and FINALIZER in obj["metadata"]["finalizers"]
    assert obj["status"]["phase"] == "Running"
    agents.completed(scene.ns, "m", ok=False, reason="Aborted", message="aborted: Migration deleted")
    wait_until(lambda: scene.gone("m"), 30, what="Migration gone")
    vm = scene.vm_obj("web")
    assert vm["status"]["host"] == src and ANNOTATION not in (vm["metadata"].get("annotations") or {})


def test_kubectl_delete_before_running_cancels(scene: Scene, fleet: Fleet) -> None:
    src = fleet.host("src", cpu=4, memory="4Gi")
    dst = fleet.host("dst", cpu=4, memory="4Gi")
    scene.vm("web", src)
    scene.migrate("m", "web", dst)
    scene.wait_phase("m", "PreparingTarget")
    scene.kubectl("delete", "vmig", "m", "-n", scene.ns, "--wait=false")
    wait_until(lambda: scene.gone("m"), 30, what="Migration gone")
    assert ANNOTATION not in (scene.vm_obj("web")["metadata"].get("annotations") or {})


def test_target_not_ready_and_lost_host_fail_the_migration(
    scene: Scene, fleet: Fleet, agents: AgentConditionsStandIn
) -> None:
    src = fleet.host("src", cpu=4, memory="4Gi")
    dst = fleet.host("dst", cpu=4, memory="4Gi")
    fragile = fleet.host("fragile", cpu=4, memory="4Gi", lease_seconds=3)
    scene.vm("web", src)
    scene.vm("db", src)
    scene.migrate("m1", "web", dst)
    scene.wait_phase("m1", "PreparingTarget")
    agents.target_ready(scene.ns, "m1", ok=False, reason="NetworkMissing", message="network br-lab not found")
    status = scene.wait_phase("m1", "Failed")
    assert "NetworkMissing" in status["failureReason"] and "br-lab" in status["failureReason"]

    scene.migrate("m2", "db", fragile)
    scene.wait_phase("m2", "PreparingTarget")
    fleet.beats[fragile].stop()  # the target's agent goes silent
    status = scene.wait_phase("m2", "Failed")
    assert f"host {fragile} became NotReady" in status["failureReason"]
    assert scene.events("HostNotReady")
    scene.wait_unmarked("db")


def test_a_lost_source_host_fails_running_migrations_and_lets_them_be_deleted(
    scene: Scene, fleet: Fleet, agents: AgentConditionsStandIn
) -> None:
    # Only the source agent ends a Running migration: when its host never comes back, the operator must.
    src = fleet.host("src", cpu=4, memory="4Gi", lease_seconds=3)
    dst = fleet.host("dst", cpu=4, memory="4Gi")
    for vm, m in (("web", "m1"), ("db", "m2")):
        scene.vm(vm, src)
        scene.migrate(m, vm, dst)
        scene.wait_phase(m, "PreparingTarget")
        agents.target_ready(scene.ns, m)
        scene.wait_phase(m, "Running")
    scene.kubectl("delete", "vmig", "m2", "-n", scene.ns, "--wait=false")
    fleet.beats[src].stop()  # the source's agent goes silent for good
    status = scene.wait_phase("m1", "Failed", timeout=40)
    assert f"source host {src} lost" in status["failureReason"], status
    assert scene.events("SourceHostLost")
    wait_until(lambda: scene.gone("m2"), 30, what="the deleted Migration gone (its finalizer lifted)")
    vm = scene.wait_unmarked("web")
    assert vm["status"]["host"] == src and vm["metadata"]["labels"]["vapor.io/host"] == src


def test_operator_restarted_mid_migration_finishes_it(
    scene: Scene, fleet: Fleet, agents: AgentConditionsStandIn, operator: ComponentProcess
) -> None:
    src = fleet.host("src", cpu=8, memory="8Gi")
    dst = fleet.host("dst", cpu=8, memory="8Gi")
    for i in range(3):
        scene.vm(f"vm{i}", src)
        scene.migrate(f"m{i}", f"vm{i}", dst)
    scene.wait_phase("m0", "PreparingTarget")
    scene.wait_phase("m1", "PreparingTarget")
    wait_until(lambda: scene.status("m2").get("queuePosition") == 1, 30, what="m2 queued")
    agents.target_ready(scene.ns, "m0")
    scene.wait_phase("m0", "Running")

    operator.stop()
    agents.completed(scene.ns, "m0")  # the migration ends while no operator runs
    operator.start()

    scene.wait_phase("m0", "Succeeded")
    assert scene.vm_obj("vm0")["status"]["host"] == dst
    scene.wait_phase("m2", "PreparingTarget")  # the queue was recomputed from the resources
    assert scene.status("m1")["phase"] == "PreparingTarget"


def test_drain_moves_three_vms_and_reports_progress(
    scene: Scene, fleet: Fleet, kubectl: Kubectl, agents: AgentConditionsStandIn
) -> None:
    src = fleet.host("src", cpu=8, memory="8Gi")
    dst = fleet.host("dst", cpu=8, memory="8Gi")
    scene.vm("a", src)
    scene.vm("b", src)
    scene.vm("c", src, phase="Stopped")
    kubectl("patch", "host", src, "--type=merge", "-p", '{"spec":{"maintenance":true}}')
    drain = wait_until(lambda: kubectl.get_json("host", src).get("status", {}).get("drain"), 30, what="drain")
    assert drain["phase"] == "Draining" and drain["remaining"] == 3
    migrations = wait_until(
        lambda: (
            len(items := kubectl.get_json("vmig", "-n", scene.ns, "-l", f"vapor.io/drain={src}")["items"]) == 3
            and items
        ),
        30,
        what="three drain migrations",
    )
    by_vm = {m["spec"]["vmName"]: m for m in migrations}
    assert set(by_vm) == {"a", "b", "c"}
    assert all(m["metadata"]["name"].startswith(f"drain-{vm}-") for vm, m in by_vm.items())
    assert by_vm["a"]["spec"]["live"] is True and by_vm["c"]["spec"]["live"] is False
    assert "destinationHost" not in by_vm["a"]["spec"]

    agents.autopilot(scene.ns)
    drained = wait_until(
        lambda: (d := kubectl.get_json("host", src)["status"].get("drain") or {}).get("phase") == "Drained" and d,
        60,
        what="Drained",
    )
    assert drained["remaining"] == 0
    for vm in ("a", "b", "c"):
        assert scene.vm_obj(vm)["status"]["host"] == dst
    notes = kubectl("describe", "host", src).stdout
    assert "DrainStarted" in notes and "Drained" in notes

    kubectl("patch", "host", src, "--type=merge", "-p", '{"spec":{"maintenance":false}}')
    wait_until(lambda: "drain" not in kubectl.get_json("host", src)["status"], 30, what="drain cleared")


def test_offline_migration_picks_a_destination(scene: Scene, fleet: Fleet, agents: AgentConditionsStandIn) -> None:
    src = fleet.host("src", cpu=4, memory="4Gi")
    fleet.host("small", cpu=4, memory="1Gi")
    roomy = fleet.host("roomy", cpu=4, memory="6Gi")
    scene.vm("idle", src, phase="Stopped")
    scene.migrate("off", "idle", live=False)
    status = scene.wait_phase("off", "PreparingTarget")
    assert status["targetHost"] == roomy  # the Ready host with the most room
    agents.autopilot(scene.ns)
    scene.wait_phase("off", "Succeeded")
    assert scene.vm_obj("idle")["status"]["host"] == roomy


def test_drain_fails_when_a_vm_cannot_be_moved(scene: Scene, fleet: Fleet, kubectl: Kubectl) -> None:
    src = fleet.host("src", cpu=8, memory="8Gi")
    fleet.host("small", cpu=8, memory="1Gi")
    scene.vm("big", src, memory="4Gi")
    kubectl("patch", "host", src, "--type=merge", "-p", '{"spec":{"maintenance":true}}')
    failed = wait_until(
        lambda: (d := kubectl.get_json("host", src)["status"].get("drain") or {}).get("phase") == "Failed" and d,
        60,
        what="drain Failed",
    )
    assert failed["remaining"] == 1 and "big" in failed["message"] and "3 attempts" in failed["message"]
    tries = kubectl.get_json("vmig", "-n", scene.ns, "-l", f"vapor.io/drain={src}")["items"]
    assert len(tries) == 3 and all(t["status"]["phase"] == "Failed" for t in tries)
    assert "DrainFailed" in kubectl("describe", "host", src).stdout
    assert scene.vm_obj("big")["status"]["host"] == src


def test_vm_deleted_while_the_target_prepares_fails_the_migration(scene: Scene, fleet: Fleet) -> None:
    src = fleet.host("src", cpu=4, memory="4Gi")
    dst = fleet.host("dst", cpu=4, memory="4Gi")
    scene.vm("web", src)
    scene.migrate("m", "web", dst)
    scene.wait_phase("m", "PreparingTarget")
    scene.kubectl("delete", "vvm", "web", "-n", scene.ns, "--wait=false")
    status = scene.wait_phase("m", "Failed")
    assert "was deleted" in status["failureReason"]
    wait_until(lambda: FINALIZER not in (scene.get("m")["metadata"].get("finalizers") or []), 20, what="finalizer")

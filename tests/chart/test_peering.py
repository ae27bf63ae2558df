"""Two operator replicas against the real API server: one acts, the other waits, and takes over when the first stops.

The peering CRDs come from the chart (rendered as a release with two operator
replicas renders them); the operators run with the flags the chart gives them
(``--peering``), with fixed priorities here so the test knows which one leads.
Who acted is read from each replica's own metrics: a paused replica runs no
handler at all.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Kubectl
from tests.observability.conftest import get, sample, scrape
from tests.support.processes import ComponentProcess
from tests.support.wait import wait_until
from vapor.devenv import ControlPlane
from vapor.devenv.processes import free_port

from .conftest import CHART, Helm

pytestmark = [pytest.mark.chart, pytest.mark.controlplane]

PEERING = "vapor-operator"


class Replica:
    """One operator replica with its liveness and metrics ports."""

    def __init__(self, control_plane: ControlPlane, name: str, priority: int, log: Path) -> None:
        self.name = name
        self.liveness, self.metrics = free_port(), free_port()
        args = [
            "--kubeconfig", str(control_plane.kubeconfig),
            "--peering", "--priority", str(priority),
            "--liveness", f"http://127.0.0.1:{self.liveness}/healthz",
            "--metrics-bind", f"127.0.0.1:{self.metrics}",
        ]  # fmt: skip
        env = {"VAPOR_PLACEMENT_RETRY_INTERVAL": "1", "VAPOR_HEALTH_INTERVAL": "1"}
        self.proc = ComponentProcess("vapor.operator", args, log, env)

    def start(self) -> Replica:
        self.proc.start()

        def live() -> bool:
            assert self.proc.running(), f"operator {self.name} exited:\n{self.proc.tail()}"
            return get(f"http://127.0.0.1:{self.liveness}/healthz")[0] == 200

        wait_until(live, timeout=60, what=f"operator {self.name} to be live")
        return self

    def handled(self) -> float:
        """Handler calls this replica made so far (any handler, any result)."""
        samples = scrape(f"http://127.0.0.1:{self.metrics}/metrics")
        return sum(v for (name, _), v in samples.items() if name == "vapor_operator_reconciles_total")

    def placed_or_decided(self, handler: str = "vm_changed") -> float:
        return sample(
            scrape(f"http://127.0.0.1:{self.metrics}/metrics"),
            "vapor_operator_reconciles_total",
            handler=handler,
            result="success",
        )


@pytest.fixture
def replicas(control_plane: ControlPlane, helm: Helm, kubectl: Kubectl, tmp_path: Path) -> Iterator[list[Replica]]:
    only = ["--show-only", "templates/operator-peering.yaml"]
    manifest = helm("template", "peers", str(CHART), "--set", "operator.replicas=2", *only).stdout
    kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=peering-test", "-f", "-", input=manifest)
    kubectl("wait", "--for=condition=Established", "crd/clusterkopfpeerings.kopf.dev", "--timeout=60s")
    made: list[Replica] = []
    yield made
    for replica in made:
        replica.proc.stop()
        print(f"--- operator {replica.name} ---\n{replica.proc.tail(60)}")
    kubectl("delete", "clusterkopfpeering", PEERING, "--ignore-not-found", "--wait=false", check=False)


def _peers(kubectl: Kubectl) -> dict[str, dict[str, object]]:
    result = kubectl("get", "clusterkopfpeering", PEERING, "-o", "json", check=False)
    if result.returncode != 0:
        return {}
    return dict(json.loads(result.stdout).get("status") or {})


def _vm(kubectl: Kubectl, namespace: str, name: str) -> Callable[[], bool]:
    """Create a VM no host can take; the probe says when an operator has declared it Unschedulable."""
    kubectl.apply(
        {
            "apiVersion": "vapor.io/v1alpha1",
            "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"runStrategy": "Halted", "cpu": 1, "memory": "64Mi", "host": f"nowhere-{namespace}"},
        }
    )

    def unschedulable() -> bool:
        status = kubectl.get_json("virtualmachine", name, "-n", namespace).get("status") or {}
        return status.get("phase") == "Unschedulable"

    return unschedulable


def test_one_replica_acts_and_the_other_takes_over(
    control_plane: ControlPlane, kubectl: Kubectl, namespace: str, replicas: list[Replica], tmp_path: Path
) -> None:
    leader = Replica(control_plane, "leader", 200, tmp_path / "leader.log")
    replicas.append(leader)
    leader.start()
    standby = Replica(control_plane, "standby", 100, tmp_path / "standby.log")
    replicas.append(standby)
    standby.start()
    # Both keep their keep-alive in the shared ClusterKopfPeering, which the first one created.
    peers = wait_until(lambda: len(_peers(kubectl)) == 2 and _peers(kubectl), timeout=60, what="two peers")
    assert sorted(p["priority"] for p in peers.values()) == [100, 200]  # type: ignore[type-var]

    wait_until(_vm(kubectl, namespace, "first"), timeout=60, what="a decision on the first VM")
    wait_until(lambda: leader.placed_or_decided() >= 1, timeout=10, what="the leader's count of its decision")
    # The standby is alive, but paused: it has run no handler at all.
    assert get(f"http://127.0.0.1:{standby.liveness}/healthz")[0] == 200
    assert standby.handled() == 0

    # The leader stops (as a rolling update or a drained node stops it): it leaves the peering at once.
    leader.proc.stop()
    wait_until(lambda: len(_peers(kubectl)) == 1, timeout=30, what="the leader to leave the peering")
    wait_until(_vm(kubectl, namespace, "second"), timeout=60, what="the standby to decide on the second VM")
    assert standby.placed_or_decided() >= 1

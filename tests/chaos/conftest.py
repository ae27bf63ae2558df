"""The chaos suite's testbed: the two-host migration testbed, two peered operators and the gateway.

Everything runs on a control plane of its own (the suite kills its etcd and
kube-apiserver; the session's stays up for the other tests). The hosts, their
agents and the operators come from tests/migration's ``make_cluster``, the
peering CRDs from the chart, the gateway and its PAM admin from tests/support.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import libvirt
import pytest

from vapor.devenv import ControlPlane

from ..chart.conftest import Helm, helm  # noqa: F401  (the fixture, to render the peering CRDs)
from ..conftest import Kubectl
from ..migration.conftest import Cluster, make_cluster
from ..support.gatewayproc import UserGateway, gateway_answers, gateway_for_users
from ..support.hosts import Testbed
from .killer import Part

# The operators' settings here: a lost source host ends its migrations 20 s after its Lease expired (an agent
# the killer restarts is back long before), unfinished migrations looked at every second.
OPERATOR_ENV = {"VAPOR_MIGRATION_SOURCE_LOST_GRACE": "20", "VAPOR_MIGRATION_INTERVAL": "1"}


@dataclass
class Bed:
    """The running system, how to reach it, and how to crash each of its parts."""

    plane: ControlPlane
    kubectl: Kubectl
    cluster: Cluster
    users: UserGateway

    @property
    def url(self) -> str:
        return self.users.url

    @property
    def conns(self) -> dict[str, libvirt.virConnect]:
        """Each host's libvirt connection, by its node name."""
        return dict(zip(self.cluster.nodes, self.cluster.conns, strict=True))

    def namespace(self, base: str) -> str:
        """A new namespace the REST users may use."""
        name = f"{base}-{uuid.uuid4().hex[:6]}"
        self.kubectl("create", "namespace", name)
        self.plane.grant_user_access([name])
        return name

    def parts(self) -> list[Part]:
        """What the killer may crash: each agent, the active operator, the gateway, kube-apiserver and etcd."""
        c, plane, gateway = self.cluster, self.plane, self.users.process
        parts = [Part(f"agent-{i}", agent.kill, agent.start, agent.running) for i, agent in enumerate(c.agents)]
        active = c.operators[0]  # the highest priority: the one that acts while it lives
        parts += [
            Part("operator", active.kill, active.start, active.running),
            Part("gateway", gateway.kill, gateway.start, lambda: gateway_answers(self.url)),
            Part("kube-apiserver", lambda: plane.kill("kube-apiserver"), lambda: plane.start_again("kube-apiserver")),
            Part("etcd", lambda: plane.kill("etcd"), lambda: plane.start_again("etcd")),
        ]
        return parts

    def trail(self, violations: list[str], history: Sequence[str] = (), lines: int = 40) -> str:
        """What each component logged about the VMs named in ``violations`` (a failure's report)."""
        names = {
            word.rsplit("_", 1)[-1] for v in violations for word in v.split() if word.startswith("w-") or "_w-" in word
        }
        procs = [*self.cluster.agents, *self.cluster.operators, self.users.process]
        found = []
        for proc in procs:
            text = proc.log_path.read_text(errors="replace") if proc.log_path.exists() else ""
            hits = [line[:400] for line in text.splitlines() if any(n in line for n in names)]
            found.append(f"--- {proc.log_path.name} ({proc.module})\n" + "\n".join(hits[-lines:]))
        calls = [line for line in history if any(n in line for n in names)]
        return "--- REST calls\n" + "\n".join(calls) + "\n" + "\n".join(found)

    def logs(self) -> str:
        return f"{self.cluster.logs()}\n--- gateway\n{self.users.process.tail(40)}"


@pytest.fixture(scope="module")
def chaos_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with ControlPlane(tmp_path_factory.mktemp("chaos-controlplane")) as cp:
        yield cp


@pytest.fixture(scope="module")
def bed(chaos_plane: ControlPlane, helm: Helm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:  # noqa: F811
    kubectl = Kubectl(chaos_plane)
    peering = helm.template("chaos", "vapor-system", "--set", "operator.replicas=2",
                            "--show-only", "templates/operator-peering.yaml")  # fmt: skip
    kubectl("apply", "--server-side", "--field-manager=chaos", "-f", "-", input=peering)
    kubectl("wait", "--for=condition=Established", "crd/clusterkopfpeerings.kopf.dev", "--timeout=60s")
    logs: Path = tmp_path_factory.mktemp("chaos-gateway")
    with (
        make_cluster(chaos_plane, kubectl, Testbed(2), replicas=2, operator_env=OPERATOR_ENV) as cluster,
        gateway_for_users(chaos_plane.kubeconfig, logs / "gateway.log") as users,
    ):
        yield Bed(chaos_plane, kubectl, cluster, users)


@pytest.fixture
def seed() -> int:
    """The run's random seed (VAPOR_CHAOS_SEED, else a new one), printed so that a run can be told apart."""
    value = int(os.environ.get("VAPOR_CHAOS_SEED") or random.randrange(1 << 30))
    print(f"chaos seed {value}")
    return value

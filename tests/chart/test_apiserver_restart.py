"""The operator and an agent, each with its own ServiceAccount, carry on through a kube-apiserver restart.

Right after it starts, kube-apiserver serves before its RBAC authorizer's
caches are filled, and refuses with 403 what RBAC allows: to every identity
but the admin's (system:masters needs no binding), so the suite's admin
kubeconfig never sees it. Here the chart is installed on a control plane of
the test's own (its API server is restarted; the session's stays up), the
operator runs with a token of its ServiceAccount and the agent with the token
the kubelet would mount in its pod (bound to its node, as the chart's
admission policy wants), both as the chart runs them. Then kube-apiserver is
killed and started again, and a probe with the agent's identity records the
403s of the window the components go through.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import libvirt
import pytest

from tests.conftest import Kubectl
from tests.support.agent import qemu_reachable_dir
from tests.support.libvirtd import Libvirtd
from tests.support.processes import FAST_OPERATOR, ComponentProcess
from tests.support.wait import wait_until
from vapor.devenv import ControlPlane
from vapor.devenv.processes import free_port

from ..agent.conftest import remove_domains
from .conftest import (
    CHART,
    Helm,
    agent_as_in_its_pod,
    as_in_its_pod,
    kubeconfig_as,
    node_bound_kubeconfig,
    release_name,
)

pytestmark = pytest.mark.chart

NAMESPACE = "vapor-restart"
READY = ("get", "--raw", "/readyz")
# A restart has a window of 403s about every fourth time, and the agent's heartbeat meets it more rarely: 1 to 19
# restarts until both met one (12 runs). Past this many the carrying on is still checked, then the test skips.
MAX_RESTARTS = 40


@pytest.fixture
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A control plane of the test's own, stopped (with all it held) after the test."""
    with ControlPlane(tmp_path_factory.mktemp("restart-controlplane")) as cp:
        yield cp


def ready_condition(kubectl: Kubectl, node: str) -> dict[str, Any]:
    """The Host's Ready condition as the operator wrote it ({} when none yet)."""
    host = kubectl("get", "host", node, "-o", "json", check=False)
    status = (json.loads(host.stdout).get("status") or {}) if host.returncode == 0 else {}
    return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})


def renewed(kubectl: Kubectl, node: str) -> datetime | None:
    """When the agent last renewed its Lease."""
    lease = kubectl("get", "lease", node, "-n", NAMESPACE, "-o", "json", check=False)
    if lease.returncode != 0:
        return None
    return datetime.fromisoformat(json.loads(lease.stdout)["spec"]["renewTime"].replace("Z", "+00:00"))


def restart_through_the_window(
    plane: ControlPlane, kubectl: Kubectl, identity: Path, down: float, seen: Counter[str]
) -> None:
    """Kill kube-apiserver, start it again ``down`` seconds later, ask as ``identity`` until it answers.

    Each answer's kind is counted in ``seen``: ok, 403 (the window), down.
    """
    plane.kill("kube-apiserver")
    time.sleep(down)
    plane.start_again("kube-apiserver", wait=False)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        answer = kubectl("--kubeconfig", str(identity), "get", "hosts", "-o", "name", check=False)
        if answer.returncode == 0:
            seen["ok"] += 1
            break
        seen["403" if "forbidden" in answer.stderr.lower() else "down"] += 1
    wait_until(lambda: kubectl(*READY, check=False).returncode == 0, 90, what="kube-apiserver ready again")


def refusals(log: str, about: str = "") -> int:
    """Lines of a component's log with a 403 (and ``about``)."""
    status = re.compile(r"(?<![0-9A-Za-z.])403(?![0-9A-Za-z])|forbidden", flags=re.IGNORECASE)
    return sum(1 for line in log.splitlines() if about in line and status.search(line))


def test_the_operator_and_an_agent_with_their_own_accounts_carry_on_after_kube_apiserver_restarts(
    plane: ControlPlane, helm: Helm, tmp_path: Path
) -> None:
    kubectl = Kubectl(plane)
    helm = dataclasses.replace(helm, kubeconfig=plane.kubeconfig)
    release, node = release_name(), f"restart-{release_name()}"
    kubectl("create", "namespace", NAMESPACE)
    helm(
        "install", release, str(CHART), "--namespace", NAMESPACE,
        "--set", f"operator.livenessPort={free_port()}", "--set", f"operator.metricsPort={free_port()}", cluster=True,
    )  # fmt: skip
    config = kubeconfig_as(plane, kubectl, NAMESPACE, f"{release}-vapor-operator", tmp_path / "operator.kubeconfig")
    args, env = as_in_its_pod(kubectl, NAMESPACE, f"{release}-vapor-operator", config)
    operator = ComponentProcess("vapor.operator", args, tmp_path / "operator.log", {**env, **FAST_OPERATOR})
    state, daemon = qemu_reachable_dir(), Libvirtd().start()
    bound = node_bound_kubeconfig(plane, kubectl, NAMESPACE, f"{release}-vapor-agent", node, tmp_path / "agent.kc")
    try:
        with bound as agent_config:
            # Renewing ten times a second (and so retrying a failed renewal as soon), the heartbeat meets the
            # window of every restart: it lasts about 0.1 to 0.3 s here.
            agent = agent_as_in_its_pod(
                kubectl, NAMESPACE, release, node, agent_config, state, daemon.uri, tmp_path / "agent.log", 0.1
            )
            with agent, operator:

                def logs() -> str:
                    return f"\n--- operator\n{operator.tail(60)}\n--- agent\n{agent.tail(60)}"

                try:
                    wait_until(lambda: ready_condition(kubectl, node).get("status") == "True", 90, what="Host Ready")
                except AssertionError as error:
                    raise AssertionError(f"{error}{logs()}") from None
                ready_since = ready_condition(kubectl, node)["lastTransitionTime"]
                logged = (len(operator.log_path.read_text()), len(agent.log_path.read_text()))
                seen: Counter[str] = Counter()

                def met() -> tuple[int, int]:
                    """403s the operator, and the agent's heartbeat, logged since the first restart."""
                    return (
                        refusals(operator.log_path.read_text()[logged[0] :]),
                        refusals(agent.log_path.read_text()[logged[1] :], "lease renewal failed"),
                    )

                # The window lasts a fraction of a second, and both retry every second or so after the kill: a
                # restart meets it or not. So restart with the API server down a little longer each time (a
                # fifth of a second more, so the window falls elsewhere in their retry cycle), until the operator and
                # the agent's heartbeat (what keeps its Host Ready) both met it.
                restarts = 0
                while restarts < MAX_RESTARTS and not all(met()):
                    restart_through_the_window(plane, kubectl, agent_config, (restarts % 5) / 5, seen)
                    restarts += 1
                back = datetime.now(UTC)
                print(f"{restarts} kube-apiserver restarts; probe answers as the agent: {dict(seen)}; 403s logged "
                      f"by the operator and the agent's heartbeat: {met()}")  # fmt: skip
                assert operator.running() and agent.running(), logs()
                # The agent heartbeats again, and the Host never turned NotReady.
                try:
                    wait_until(lambda: (renewed(kubectl, node) or back) > back, 30, what="a Lease renewal after it")
                except AssertionError as error:
                    raise AssertionError(f"{error}{logs()}") from None
                condition = ready_condition(kubectl, node)
                assert condition["status"] == "True" and condition["lastTransitionTime"] == ready_since, condition
                window_met = all(met())
                # A VM made now is placed by the operator and started by the agent.
                vm = {
                    "apiVersion": "vapor.io/v1alpha1",
                    "kind": "VirtualMachine",
                    "metadata": {"name": "after-restart", "namespace": NAMESPACE},
                    "spec": {"runStrategy": "Running", "cpu": 1, "memory": "32Mi"},
                }
                kubectl.apply(vm)

                def running() -> dict[str, Any] | None:
                    got = kubectl.get_json("virtualmachine", "after-restart", "-n", NAMESPACE).get("status") or {}
                    return got if got.get("phase") == "Running" else None

                try:
                    status = wait_until(running, 60, what="the VM made after the restarts Running")
                except AssertionError as error:
                    raise AssertionError(f"{error}{logs()}") from None
                assert status["host"] == node
                conn = libvirt.open(daemon.uri)
                try:
                    assert conn.lookupByName(f"{NAMESPACE}_after-restart").isActive()
                finally:
                    conn.close()
                if not window_met:
                    # Everything carried on through the restarts, but they did not show what this test is about.
                    pytest.skip(f"the 403 window was not met by both in {restarts} restarts (403s logged: {met()})")
    finally:
        conn = libvirt.open(daemon.uri)
        try:
            remove_domains(conn, f"{NAMESPACE}_")
        finally:
            conn.close()
        daemon.stop()
        shutil.rmtree(state, ignore_errors=True)

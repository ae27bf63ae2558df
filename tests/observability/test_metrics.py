"""Each component's /metrics, /healthz and /readyz, scraped over HTTP from the real processes."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Kubectl
from tests.support.agent import AgentProcess
from tests.support.processes import ComponentProcess
from tests.support.wait import wait_until
from vapor.devenv import ControlPlane
from vapor.devenv.processes import free_port

from .conftest import get, sample, scrape

pytestmark = pytest.mark.controlplane


def _ready(url: str, proc: ComponentProcess, what: str) -> None:
    def answers() -> bool:
        assert proc.running(), f"{what} exited:\n{proc.tail()}"
        return get(url)[0] == 200

    wait_until(answers, timeout=60, what=what)


@pytest.fixture
def gateway(control_plane: ControlPlane, kubectl: Kubectl, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    secrets = f"gw-{uuid.uuid4().hex[:8]}"
    env = {"VAPOR_SECRET_NAMESPACE": secrets, "VAPOR_SIGNING_KEY_SECRET": "key", "VAPOR_RATE_LIMIT": "0"}
    args = ["--bind", f"127.0.0.1:{port}", "--kubeconfig", str(control_plane.kubeconfig)]
    with ComponentProcess("vapor.gateway", args, tmp_path / "gateway.log", env) as proc:
        _ready(f"http://127.0.0.1:{port}/readyz", proc, "the gateway to be ready")
        yield f"http://127.0.0.1:{port}"
    kubectl("delete", "namespace", secrets, "--wait=false", "--ignore-not-found", check=False)


def test_gateway_counts_requests_by_route_template_and_status(gateway: str) -> None:
    assert get(f"{gateway}/healthz") == (200, "ok\n")
    assert get(f"{gateway}/readyz") == (200, "ok\n")
    before = scrape(f"{gateway}/metrics")
    assert get(f"{gateway}/api/v1/hosts")[0] == 401  # no token
    assert get(f"{gateway}/api/v1/vms/some-vm-{uuid.uuid4().hex[:6]}")[0] == 401
    assert get(f"{gateway}/no/such/{uuid.uuid4().hex}")[0] == 404
    after = scrape(f"{gateway}/metrics")

    def grew(route: str, status: str) -> float:
        name = "vapor_gateway_http_requests_total"
        return sample(after, name, method="GET", route=route, status=status) - sample(
            before, name, method="GET", route=route, status=status
        )

    assert grew("/api/v1/hosts", "401") == 1
    # A path with names in it is counted under its route template, not as itself.
    templated = [k for k in after if k[0] == "vapor_gateway_http_requests_total" and ("status", "401") in k[1]]
    routes = {dict(labels)["route"] for _, labels in templated}
    assert routes >= {"/api/v1/hosts", "/api/v1/vms/<vm_id>"} and not any("some-vm" in r for r in routes), routes
    assert grew("unmatched", "404") == 1
    count = "vapor_gateway_http_request_duration_seconds_count"
    assert sample(after, count, method="GET", route="/api/v1/hosts") > sample(
        before, count, method="GET", route="/api/v1/hosts"
    )


def test_gateway_health_paths_are_not_in_the_api_document(gateway: str) -> None:
    import json

    paths = json.loads(get(f"{gateway}/openapi.json")[1])["paths"]
    assert not {"/metrics", "/healthz", "/readyz"} & set(paths)


def test_agent_and_operator_metrics(
    control_plane: ControlPlane,
    agent_factory: Callable[..., AgentProcess],
    node_name: str,
    namespace: str,
    kubectl: Kubectl,
    tmp_path: Path,
) -> None:
    agent_port = free_port()
    agent = agent_factory(node_name, extra_args=("--metrics-bind", f"127.0.0.1:{agent_port}"))
    agent.start()
    agent_url = f"http://127.0.0.1:{agent_port}"
    _ready(f"{agent_url}/readyz", agent, "the agent to be ready")
    assert get(f"{agent_url}/healthz") == (200, "ok\n")
    agent_samples = scrape(f"{agent_url}/metrics")
    calls = {
        dict(labels)["call"]: value
        for (name, labels), value in agent_samples.items()
        if name == "vapor_agent_libvirt_call_duration_seconds_count"
    }
    assert calls.get("open", 0) >= 1, calls  # the connection to libvirtd, timed
    wait_until(
        lambda: sample(scrape(f"{agent_url}/metrics"), "vapor_agent_inventory_writes_total") >= 1,
        timeout=30,
        what="the agent's first inventory write to be counted",
    )

    # The operator, with the agent's Leases where it looks for them, places a VM on the agent's host.
    liveness, metrics = free_port(), free_port()
    args = [
        "--kubeconfig", str(control_plane.kubeconfig),
        "--liveness", f"http://127.0.0.1:{liveness}/healthz",
        "--metrics-bind", f"127.0.0.1:{metrics}",
    ]  # fmt: skip
    env = {"VAPOR_HEALTH_INTERVAL": "1", "VAPOR_PLACEMENT_RETRY_INTERVAL": "1", "VAPOR_LEASE_NAMESPACE": namespace}
    with ComponentProcess("vapor.operator", args, tmp_path / "operator.log", env) as operator:
        _ready(f"http://127.0.0.1:{liveness}/healthz", operator, "the operator's liveness endpoint")
        kubectl.apply(
            {
                "apiVersion": "vapor.io/v1alpha1",
                "kind": "VirtualMachine",
                "metadata": {"name": "metered", "namespace": namespace},
                "spec": {"runStrategy": "Halted", "cpu": 1, "memory": "64Mi", "host": node_name},
            }
        )

        def placed() -> bool:
            status = kubectl.get_json("virtualmachine", "metered", "-n", namespace).get("status") or {}
            return status.get("host") == node_name

        try:
            wait_until(placed, timeout=60, what="the operator to place the VM")
            # the count follows the write the test saw: read it once the operator has counted
            wait_until(
                lambda: sample(scrape(f"http://127.0.0.1:{metrics}/metrics"), "vapor_operator_vms_placed_total") >= 1,
                timeout=30,
                what="the placement to be counted",
            )
        except AssertionError as error:
            raise AssertionError(f"{error}\n{operator.tail()}") from None
        samples = scrape(f"http://127.0.0.1:{metrics}/metrics")
    assert sample(samples, "vapor_operator_vms_placed_total") == 1
    assert sample(samples, "vapor_operator_reconciles_total", handler="vm_changed", result="success") >= 1
    assert sample(samples, "vapor_operator_reconciles_total", handler="check_host", result="success") >= 1
    assert sample(samples, "vapor_operator_reconcile_duration_seconds_count", handler="vm_changed") >= 1
    # Every handler's error series exists from the start, so an alert on it has something to read.
    assert ("vapor_operator_reconciles_total", frozenset({("handler", "vm_changed"), ("result", "error")})) in samples

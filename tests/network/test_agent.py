"""The agent keeps a network namespace as the Host's spec.interfaces says: kubectl edits, drift, drivers."""

from __future__ import annotations

import json
from typing import Any

from vapor.model import names

from ..conftest import Kubectl
from ..support.agent import AgentProcess
from ..support.wait import eventually
from .conftest import Netns


def host_json(kubectl: Kubectl, node: str) -> dict[str, Any]:
    """The Host as kubectl shows it ({} before the agent has registered it)."""
    got = kubectl("get", "host", node, "-o", "json", check=False)
    return dict(json.loads(got.stdout)) if got.returncode == 0 else {}


def condition(host: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in host.get("status", {}).get("conditions") or [] if c["type"] == type_), None)


def set_interfaces(kubectl: Kubectl, node: str, interfaces: list[dict[str, Any]]) -> None:
    """What a person does with ``kubectl edit host``: replace spec.interfaces."""
    kubectl("patch", "host", node, "--type=merge", "-p", json.dumps({"spec": {"interfaces": interfaces}}))


async def configured(kubectl: Kubectl, node: str, status: str = "True") -> dict[str, Any]:
    """The Host once the agent reports NetworkConfigured=<status> for its current generation."""

    def check() -> dict[str, Any] | None:
        host = host_json(kubectl, node)
        cond = condition(host, names.ConditionType.NETWORK_CONFIGURED)
        if cond and cond["status"] == status and cond.get("observedGeneration") == host["metadata"].get("generation"):
            return host
        return None

    return dict(await eventually(check, 60, f"NetworkConfigured={status} for the Host generation", every=0.5))


async def test_status_lists_the_namespace_interfaces(
    network_agent: AgentProcess, kubectl: Kubectl, netns: Netns
) -> None:
    def listed() -> dict[str, Any] | None:
        host = host_json(kubectl, network_agent.node_name)
        ifaces = {i["name"]: i for i in host.get("status", {}).get("interfaces") or []}
        return ifaces if {"lo", "va", "vb", "br0", "uplink"} <= set(ifaces) else None

    ifaces = await eventually(listed, 60, "the Host to list the namespace's interfaces")
    assert f"{netns.subnet}.2/24" in ifaces["uplink"]["addresses"]
    assert ifaces["va"]["type"] == "veth" and ifaces["br0"]["type"] == "bridge"
    assert ifaces["va"]["state"] == "up"
    assert set(ifaces["va"]["statistics"]) == {"rxBytes", "txBytes", "rxPackets", "txPackets"}
    host = await configured(kubectl, network_agent.node_name)
    assert host["status"]["apiInterface"] == "uplink"


async def test_kubectl_edit_is_applied_and_drift_put_back(
    network_agent: AgentProcess, kubectl: Kubectl, netns: Netns
) -> None:
    node = network_agent.node_name
    await configured(kubectl, node)
    set_interfaces(
        kubectl,
        node,
        [
            {"name": "va", "state": "up", "mtu": 1400, "addresses": ["192.0.2.10/24"], "gateway": "192.0.2.1"},
            {"name": "vb", "state": "down"},
            {"name": "br0", "state": "up", "addresses": ["198.51.100.1/24", "2001:db8::1/64"]},
        ],
    )
    await configured(kubectl, node)
    assert netns.link_up("va") and not netns.link_up("vb") and netns.link_up("br0")
    assert "mtu 1400" in netns.ip("link", "show", "va").stdout
    assert netns.addresses("va") == {"192.0.2.10/24"}
    assert netns.addresses("br0") == {"198.51.100.1/24", "2001:db8::1/64"}
    assert netns.default_route().startswith("default via 192.0.2.1 dev va")

    # Someone changes things by hand: the agent puts them back.
    netns.ip("link", "set", "va", "down")
    netns.ip("link", "set", "vb", "up")
    netns.ip("addr", "add", "192.0.2.99/24", "dev", "va")
    await eventually(
        lambda: netns.link_up("va") and not netns.link_up("vb") and netns.addresses("va") == {"192.0.2.10/24"},
        30,
        "the agent to put va and vb back",
    )
    await eventually(lambda: "via 192.0.2.1 dev va" in netns.default_route(), 30, "the default route back")
    # An interface the spec does not name is left alone.
    netns.ip("link", "set", "uplink", "mtu", "1300")
    host = await configured(kubectl, node)
    assert "mtu 1300" in netns.ip("link", "show", "uplink").stdout
    by_name = {i["name"]: i for i in host["status"]["interfaces"]}
    assert by_name["vb"]["state"] == "down"


async def test_missing_interface_and_missing_driver_are_reported(
    network_agent: AgentProcess, kubectl: Kubectl, netns: Netns
) -> None:
    node = network_agent.node_name
    await configured(kubectl, node)
    set_interfaces(kubectl, node, [{"name": "nosuch0", "state": "up"}])
    host = await configured(kubectl, node, "False")
    cond = condition(host, names.ConditionType.NETWORK_CONFIGURED)
    assert cond is not None and cond["reason"] == "InterfaceNotFound" and "nosuch0" in cond["message"]

    # This kernel has no dummy driver: said so, not a crash; a bridge can be made.
    set_interfaces(kubectl, node, [{"name": "dm0", "kind": "dummy", "state": "up"}, {"name": "br9", "kind": "bridge"}])
    host = await configured(kubectl, node, "False")
    cond = condition(host, names.ConditionType.NETWORK_CONFIGURED)
    assert cond is not None and cond["reason"] == "DriverMissing", cond
    assert "'dummy' driver" in cond["message"]
    assert netns.ip("link", "show", "br9").returncode == 0
    assert netns.ip("link", "show", "dm0", check=False).returncode != 0
    assert network_agent.running()


async def test_a_change_that_cuts_the_node_off_is_rolled_back(
    network_agent: AgentProcess, kubectl: Kubectl, netns: Netns
) -> None:
    node = network_agent.node_name
    await configured(kubectl, node)
    set_interfaces(kubectl, node, [{"name": "uplink", "state": "down"}])
    host = await configured(kubectl, node, "False")
    cond = condition(host, names.ConditionType.NETWORK_CONFIGURED)
    assert cond is not None and cond["reason"] == "RolledBack"
    rolled = condition(host, names.ConditionType.NETWORK_ROLLED_BACK)
    assert rolled is not None and rolled["status"] == "True" and "put back" in rolled["message"]
    assert netns.link_up("uplink") and netns.addresses("uplink") == {f"{netns.subnet}.2/24"}
    # The operator's Ready condition is not the agent's to remove: both kinds of owners coexist.
    shown = json.loads(kubectl("get", "host", node, "-o", "json", "--show-managed-fields").stdout)
    managers = {m["manager"] for m in shown["metadata"]["managedFields"]}
    assert names.FIELD_MANAGER_AGENT_NETWORK in managers

"""/api/v1/network through the gateway, with a real agent applying it in the test's network namespace."""

from __future__ import annotations

import json
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from vapor.model import names

from ..conftest import Kubectl
from ..gateway.conftest import Users, bearer, login
from ..support.agent import AgentProcess
from ..support.wait import eventually
from .conftest import Netns
from .test_agent import configured, host_json

BASE = "/api/v1/network/interfaces"


@pytest.fixture
async def admin(client: Client, users: Users) -> dict[str, str]:
    return bearer((await login(client, users.admin))["token"])


@pytest.fixture
async def ready(network_agent: AgentProcess, kubectl: Kubectl, client: Client, admin: dict[str, str]) -> str:
    """The agent's node once its Host lists the namespace and the gateway's cache has it."""
    node = network_agent.node_name
    await configured(kubectl, node)

    async def listed() -> bool:
        got = await client.get(f"{BASE}?host={node}", headers=admin)
        body = await got.get_json()
        return got.status_code == 200 and "uplink" in {i["name"] for i in body["data"]["interfaces"]}

    await eventually(listed, 30, "the gateway to list the agent's interfaces", every=0.5)
    return node


def spec_of(kubectl: Kubectl, node: str, name: str) -> dict[str, Any] | None:
    host = host_json(kubectl, node)
    return next((i for i in host.get("spec", {}).get("interfaces") or [] if i["name"] == name), None)


async def test_list_up_down_and_addresses(
    ready: str, client: Client, admin: dict[str, str], kubectl: Kubectl, netns: Netns
) -> None:
    node = ready
    got = await client.get(f"{BASE}?host={node}", headers=admin)
    ifaces = {i["name"]: i for i in (await got.get_json())["data"]["interfaces"]}
    assert set(ifaces["va"]) >= {"name", "mac", "mtu", "state", "type", "addresses", "statistics"}
    assert set(ifaces["va"]["statistics"]) == {"rx_bytes", "tx_bytes", "rx_packets", "tx_packets"}

    got = await client.put(f"{BASE}/va/down?host={node}", headers=admin)
    assert got.status_code == 200, await got.get_json()
    assert (await got.get_json())["data"]["message"] == "Interface va brought down successfully"
    assert not netns.link_up("va")
    assert spec_of(kubectl, node, "va") == {"name": "va", "state": "down"}  # kubectl shows what REST wrote

    got = await client.put(f"{BASE}/va/up?host={node}", headers=admin)
    assert (await got.get_json())["data"]["message"] == "Interface va brought up successfully"
    assert netns.link_up("va")

    body = {"address": "192.0.2.10", "netmask": 24, "gateway": "192.0.2.1"}
    got = await client.post(f"{BASE}/va/address?host={node}", headers=admin, json=body)
    assert got.status_code == 200, await got.get_json()
    assert "192.0.2.10/24" in netns.addresses("va")
    assert "via 192.0.2.1 dev va" in netns.default_route()
    got = await client.post(
        f"{BASE}/va/address?host={node}", headers=admin, json={"address": "2001:db8::5", "netmask": 64}
    )
    assert got.status_code == 200, await got.get_json()
    assert netns.addresses("va") == {"192.0.2.10/24", "2001:db8::5/64"}

    got = await client.delete(f"{BASE}/va/address?host={node}&address=192.0.2.10&netmask=24", headers=admin)
    assert got.status_code == 200, await got.get_json()
    assert netns.addresses("va") == {"2001:db8::5/64"}
    assert "192.0.2.1" not in netns.default_route()

    # The same interface edited with kubectl afterwards: the agent follows that too, and the list shows it.
    kubectl(
        "patch", "host", node, "--type=json", "-p",
        json.dumps([{"op": "add", "path": "/spec/interfaces/-", "value": {"name": "vb", "state": "down"}}]),
    )  # fmt: skip
    await eventually(lambda: not netns.link_up("vb"), 30, "vb down after kubectl patch")


async def test_dry_run_changes_nothing(
    ready: str, client: Client, admin: dict[str, str], kubectl: Kubectl, netns: Netns
) -> None:
    node = ready
    before = host_json(kubectl, node)["metadata"]["generation"]
    got = await client.put(f"{BASE}/va/down?host={node}&dry_run=true", headers=admin)
    data = (await got.get_json())["data"]
    assert got.status_code == 200 and data["dry_run"] is True and data["changes"] == ["set link down"]
    got = await client.post(
        f"{BASE}/va/address?host={node}&dry_run=true", headers=admin, json={"address": "192.0.2.7", "netmask": 24}
    )
    assert (await got.get_json())["data"]["changes"] == ["add address 192.0.2.7/24"]
    assert netns.link_up("va") and netns.addresses("va") == set()
    assert spec_of(kubectl, node, "va") is None
    assert host_json(kubectl, node)["metadata"]["generation"] == before


async def test_guard_and_rollback(
    ready: str, client: Client, admin: dict[str, str], kubectl: Kubectl, netns: Netns
) -> None:
    node = ready
    got = await client.put(f"{BASE}/uplink/down?host={node}", headers=admin)
    body = await got.get_json()
    assert got.status_code == 409 and body["error"]["code"] == "CONFLICT"
    assert "force" in body["error"]["message"]
    got = await client.post(
        f"{BASE}/uplink/address?host={node}", headers=admin, json={"address": "10.9.9.9", "netmask": 24}
    )
    assert got.status_code == 409
    assert netns.link_up("uplink") and spec_of(kubectl, node, "uplink") is None

    # Forced: applied, the node is cut off, the agent puts it back and the answer says so.
    got = await client.put(f"{BASE}/uplink/down?host={node}&force=true", headers=admin)
    body = await got.get_json()
    assert got.status_code == 409, body
    assert "rolled the change back" in body["error"]["message"]
    assert netns.link_up("uplink")
    host = host_json(kubectl, node)
    rolled = next(c for c in host["status"]["conditions"] if c["type"] == names.ConditionType.NETWORK_ROLLED_BACK)
    assert rolled["status"] == "True"


BAD = [
    ("put", "nosuch0/up", None, 404, "NOT_FOUND"),
    ("put", "this-name-is-far-too-long/up", None, 400, "INVALID_INPUT"),
    ("post", "va/address", {"address": "300.1.1.1", "netmask": 24}, 400, "INVALID_INPUT"),
    ("post", "va/address", {"address": "192.0.2.10", "netmask": 33}, 400, "INVALID_INPUT"),
    ("post", "va/address", {"address": "192.0.2.10", "netmask": "255.0.255.0"}, 400, "INVALID_INPUT"),
    ("post", "va/address", {"address": "192.0.2.10", "netmask": True}, 400, "INVALID_INPUT"),
    ("post", "va/address", {"address": "2001:db8::1", "netmask": 129}, 400, "INVALID_INPUT"),
    ("post", "va/address", {"address": "192.0.2.10", "netmask": 24, "gateway": "nope"}, 400, "INVALID_INPUT"),
    ("post", "va/address", {"address": "192.0.2.10", "netmask": 24, "gateway": "198.51.100.1"}, 400, "INVALID_INPUT"),
    ("post", "va/address", {"address": "192.0.2.10", "netmask": 24, "gateway": "192.0.2.10"}, 400, "INVALID_INPUT"),
    ("post", "va/address", {"address": "224.0.0.1", "netmask": 24}, 400, "INVALID_INPUT"),
    ("post", "va/address", {"netmask": 24}, 400, "INVALID_INPUT"),
    ("post", "va/address", {"address": "192.0.2.10", "netmask": 24, "extra": 1}, 400, "INVALID_INPUT"),
    ("post", "nosuch0/address", {"address": "192.0.2.10", "netmask": 24}, 404, "NOT_FOUND"),
    ("delete", "va/address?address=192.0.2.77&netmask=24", None, 404, "NOT_FOUND"),
    ("delete", "va/address?address=192.0.2.77", None, 400, "INVALID_INPUT"),
    ("put", "va/down?dry_run=maybe", None, 400, "INVALID_INPUT"),
]


async def test_bad_input_is_refused_and_changes_nothing(
    ready: str, client: Client, admin: dict[str, str], kubectl: Kubectl, netns: Netns
) -> None:
    node = ready
    before = host_json(kubectl, node)["metadata"]["generation"]
    for method, path, body, status, code in BAD:
        sep = "&" if "?" in path else "?"
        got = await getattr(client, method)(f"{BASE}/{path}{sep}host={node}", headers=admin, json=body)
        answer = await got.get_json()
        assert (got.status_code, answer["error"]["code"]) == (status, code), (method, path, body, answer)
        assert answer["status"] == "error" and answer["error"]["message"]
    assert host_json(kubectl, node)["metadata"]["generation"] == before
    assert netns.link_up("va") and netns.addresses("va") == set()

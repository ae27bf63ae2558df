"""A VM disk's path that can be no disk on any host is refused before any host sees it.

Through REST the gateway answers the contract's error envelope (400
INVALID_INPUT); through kubectl the API server's rules (CEL, from the model)
refuse the same. A path under /dev passes both: whether it is a block device
a VM may use is the host's agent's call (tests/agent/test_disk_paths.py).
"""

from __future__ import annotations

import pytest
from quart.typing import TestClientProtocol as Client

from ..conftest import Kubectl
from .conftest import Users, bearer, login
from .test_vms import vm_manifest

REFUSED = [
    ("/etc/shadow", "system folder"),
    ("/proc/self/mem", "system folder"),
    ("/root/disk.img", "system folder"),
    ("/var/lib/vapor/images/../../../../etc/shadow", "plain absolute path"),
    ("/var/lib/libvirt/images/./a.img", "plain absolute path"),
    ("/var/lib/libvirt//images/a.img", "plain absolute path"),
]


@pytest.mark.parametrize(("path", "why"), REFUSED)
async def test_rest_refuses_a_system_or_crooked_disk_path_with_the_error_envelope(
    client: Client, users: Users, namespace: str, kubectl: Kubectl, path: str, why: str
) -> None:
    token = (await login(client, users.admin))["token"]
    body = {"name": "thief", "namespace": namespace, "memory": "64Mi", "disks": [{"name": "data", "path": path}]}
    response = await client.post("/api/v1/vms", json=body, headers=bearer(token))
    answer = await response.get_json()
    assert response.status_code == 400, answer
    assert answer["status"] == "error" and answer["error"]["code"] == "INVALID_INPUT"
    assert why in answer["error"]["message"] + str(answer["error"].get("details"))
    assert kubectl("get", "vvm", "thief", "-n", namespace, check=False).returncode != 0


@pytest.mark.parametrize(("path", "why"), REFUSED)
def test_the_api_server_refuses_the_same_paths(kubectl: Kubectl, namespace: str, path: str, why: str) -> None:
    manifest = vm_manifest("thief", namespace, disks=[{"name": "data", "path": path}])
    refused = kubectl.apply(manifest, check=False)
    assert refused.returncode != 0 and why in refused.stderr, refused.stderr


async def test_a_block_device_path_is_left_to_the_hosts_agent(
    client: Client, users: Users, namespace: str, kubectl: Kubectl
) -> None:
    token = (await login(client, users.admin))["token"]
    body = {"name": "passthrough", "namespace": namespace, "memory": "64Mi"}
    body["disks"] = [{"name": "data", "path": "/dev/disk/by-id/virtio-data"}]  # type: ignore[assignment]
    response = await client.post("/api/v1/vms", json=body, headers=bearer(token))
    assert response.status_code == 201, await response.get_json()
    assert kubectl.get_json("vvm", "passthrough", "-n", namespace)["spec"]["disks"][0]["path"].startswith("/dev/")

"""cloud-init through REST: a VM's cloud_init, checked by the gateway before the VM is made, as kubectl then sees it.

The gateway refuses with 422 what the CRD cannot see (user-data that is not
the YAML mapping it claims to be, too much once the keys are merged in, a
Secret or key that does not exist) and reads the Secret as the user (403 for
one the user may not read). Nothing is made when it refuses.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from quart.typing import TestClientProtocol as Client

from vapor.devenv import ControlPlane
from vapor.kube import Kube

from ..conftest import Kubectl
from ..support.wait import eventually
from .conftest import StandInAgent, Users, bearer, login

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGtMz2vfG7uZ1Lz0S3XyQWbX9y2K7Xh0n4m8s1dCq3bQ alice@laptop"


async def _post(client: Client, token: str, namespace: str, name: str, cloud_init: dict[str, Any]) -> tuple[int, Any]:
    body = {"name": name, "namespace": namespace, "memory": "64Mi", "cloud_init": cloud_init}
    response = await client.post("/api/v1/vms", json=body, headers=bearer(token))
    return response.status_code, await response.get_json()


def _absent(kubectl: Kubectl, namespace: str, name: str) -> bool:
    return kubectl("get", "vvm", name, "-n", namespace, check=False).returncode != 0


async def _secret(kube: Kube, namespace: str, name: str, data: dict[str, str]) -> None:
    body: Any = {"metadata": {"name": name}, "stringData": data}
    await kube.core.create_namespaced_secret(namespace, body)


async def test_cloud_init_through_rest_is_what_kubectl_sees(
    client: Client, users: Users, namespace: str, kubectl: Kubectl
) -> None:
    token = (await login(client, users.admin))["token"]
    given = {
        "user_data": "#cloud-config\npackage_update: false\n",
        "ssh_authorized_keys": [KEY],
        "hostname": "web-1",
        "network_data": "version: 2\n",
    }
    status, body = await _post(client, token, namespace, "web", given)
    assert status == 201, body
    spec = json.loads(kubectl("get", "vvm", "web", "-n", namespace, "-o", "json").stdout)["spec"]
    assert spec["cloudInit"] == {
        "userData": given["user_data"],
        "sshAuthorizedKeys": [KEY],
        "hostname": "web-1",
        "networkData": "version: 2\n",
    }


async def test_user_data_the_agent_could_not_use_is_422_and_nothing_is_made(
    client: Client, users: Users, namespace: str, kubectl: Kubectl
) -> None:
    token = (await login(client, users.admin))["token"]
    cases = {
        "not yaml": ({"user_data": "#cloud-config\nusers: [debian\n  - : :\n"}, "not valid YAML"),
        "not a mapping": ({"user_data": "#cloud-config\n- a\n- list\n"}, "not a mapping"),
        "too large": ({"user_data": "#!/bin/sh\n" + "#" * 70000 + "\n"}, "65536"),
        # Within 64 KiB alone; the keys' part, merged in, tips it over.
        "too large merged": ({"user_data": "#!/bin/sh\n" + "#" * 65500 + "\n", "ssh_authorized_keys": [KEY]}, "65536"),
    }
    for case, (cloud_init, words) in cases.items():
        name = f"bad-{uuid.uuid4().hex[:6]}"
        status, body = await _post(client, token, namespace, name, cloud_init)
        assert status == 422, (case, body)
        assert body["status"] == "error" and body["error"]["code"] == "INVALID_INPUT", case
        assert words in body["error"]["message"], (case, body)
        assert body["error"]["fields"][0]["field"] == "cloud_init.user_data", case
        assert "debian" not in json.dumps(body)  # the document itself is never quoted back
        assert _absent(kubectl, namespace, name), case


async def test_both_user_data_and_a_secret_is_a_bad_request(client: Client, users: Users, namespace: str) -> None:
    token = (await login(client, users.admin))["token"]
    both = {"user_data": "#cloud-config\n", "user_data_secret_ref": {"name": "x"}}
    status, body = await _post(client, token, namespace, "both", both)
    assert status == 400 and body["error"]["code"] == "INVALID_INPUT"
    assert "not both" in body["error"]["message"]


async def test_a_secret_must_exist_with_its_key_and_be_readable_by_the_user(
    client: Client, users: Users, namespace: str, kubectl: Kubectl, kube: Kube, control_plane: ControlPlane
) -> None:
    token = (await login(client, users.admin))["token"]
    ref = {"name": "guest-config", "key": "config"}
    # Before admins may read Secrets in the namespace: the gateway reads as the user, who may not.
    status, body = await _post(client, token, namespace, "early", {"user_data_secret_ref": ref})
    assert status == 403 and body["error"]["code"] == "PERMISSION_DENIED", body
    assert "guest-config" in body["error"]["message"] and _absent(kubectl, namespace, "early")

    control_plane.grant_user_access([namespace])
    status, body = await _post(client, token, namespace, "missing", {"user_data_secret_ref": ref})
    assert status == 422 and body["error"]["code"] == "INVALID_INPUT", body
    assert "does not exist" in body["error"]["message"]
    assert body["error"]["fields"][0]["field"] == "cloud_init.user_data_secret_ref"
    assert _absent(kubectl, namespace, "missing")

    secret_text = f"pw-{uuid.uuid4().hex}"
    await _secret(kube, namespace, "guest-config", {"other": "x"})
    status, body = await _post(client, token, namespace, "nokey", {"user_data_secret_ref": ref})
    assert status == 422 and "has no key 'config'" in body["error"]["message"], body

    await kube.core.patch_namespaced_secret(
        "guest-config", namespace, {"stringData": {"config": "#cloud-config\n- " + secret_text + "\n"}}
    )
    status, body = await _post(client, token, namespace, "badsecret", {"user_data_secret_ref": ref})
    assert status == 422 and "not a mapping" in body["error"]["message"], body
    assert secret_text not in json.dumps(body)

    await kube.core.patch_namespaced_secret(
        "guest-config", namespace, {"stringData": {"config": "#cloud-config\nchpasswd: {expire: false}\n"}}
    )
    status, body = await _post(client, token, namespace, "good", {"user_data_secret_ref": ref})
    assert status == 201, body
    spec = json.loads(kubectl("get", "vvm", "good", "-n", namespace, "-o", "json").stdout)["spec"]
    assert spec["cloudInit"] == {"userDataSecretRef": {"name": "guest-config", "key": "config"}}


async def test_the_vm_shows_the_guests_interfaces(client: Client, users: Users, namespace: str, kube: Kube) -> None:
    token = (await login(client, users.admin))["token"]
    status, body = await _post(client, token, namespace, "seen", {"hostname": "seen"})
    assert status == 201, body
    interface = {"name": "enp1s0", "mac": "52:54:00:12:34:56", "addresses": ["192.0.2.5/24"], "source": "agent"}
    await StandInAgent(kube).report("seen", namespace, phase="Running", addresses=["192.0.2.5"], interfaces=[interface])

    async def shown() -> dict[str, Any] | None:
        response = await client.get(f"/api/v1/vms/seen?namespace={namespace}", headers=bearer(token))
        data = (await response.get_json())["data"]
        return data if data["interfaces"] else None

    data = await eventually(shown, 10, "the interfaces in the view")
    assert data["interfaces"] == [interface] and data["addresses"] == ["192.0.2.5"]

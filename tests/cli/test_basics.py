"""vaporctl login, get, start/stop/restart and its errors, through its entry points against the real stack."""

from __future__ import annotations

import json
import stat
import subprocess
import uuid
from typing import Any

import httpx
import libvirt
import yaml

from vapor.devenv import ControlPlane
from vapor.devenv.processes import free_port

from ..conftest import Kubectl
from ..support.stack import Stack
from ..support.wait import wait_until
from .conftest import BIN, Vaporctl, rest


def new_vm(stack: Stack, namespace: str, name: str) -> dict[str, Any]:
    """A small VM without an OS on the stack's host, defined and shut off."""
    with rest(stack) as api:
        r = api.post(
            "/vms",
            json={"name": name, "namespace": namespace, "memory": "32Mi", "host_selector": {"e2e-run": stack.run}},
        )
        assert r.status_code == 201, r.text
        wait_until(
            lambda: api.get(f"/vms/{name}", params={"namespace": namespace}).json()["data"]["phase"] == "Stopped",
            60,
            what="VM defined",
        )
        return dict(api.get(f"/vms/{name}", params={"namespace": namespace}).json()["data"])


def domain_state(stack: Stack, namespace: str, name: str) -> int:
    return int(stack.virt.lookupByName(f"{namespace}_{name}").state()[0])


def refresh(stack: Stack, token: str) -> httpx.Response:
    return httpx.post(f"{stack.url}/api/v1/auth/refresh", json={"refresh_token": token})


def test_login_keeps_the_tokens_private_renews_them_and_logout_revokes(stack: Stack, vaporctl: Vaporctl) -> None:
    out = vaporctl.login(stack.admin, stack.url)
    assert f"as {stack.admin.name} (role admin)" in out
    assert stat.S_IMODE(vaporctl.config_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(vaporctl.config_dir.stat().st_mode) == 0o700
    saved = json.loads(vaporctl.config_file.read_text())
    assert saved["current_server"] == stack.url
    first = saved["logins"][stack.url]
    assert first["username"] == stack.admin.name and first["token"] and first["refresh_token"]

    # The token expires (as far as the tool knows): the next command renews it through /auth/refresh first.
    saved["logins"][stack.url]["expires_at"] = 1
    vaporctl.config_file.write_text(json.dumps(saved))
    assert stack.node in vaporctl.ok("get", "hosts")
    renewed = json.loads(vaporctl.config_file.read_text())["logins"][stack.url]
    assert renewed["token"] != first["token"] and renewed["refresh_token"] != first["refresh_token"]
    assert renewed["expires_at"] > 1
    assert stat.S_IMODE(vaporctl.config_file.stat().st_mode) == 0o600, "rewritten private too"

    assert "Logged out" in vaporctl.ok("logout")
    assert stack.url not in json.loads(vaporctl.config_file.read_text())["logins"]
    refused = refresh(stack, renewed["refresh_token"])
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"], refused.text
    after = vaporctl("--server", stack.url, "get", "vms")
    assert after.returncode == 1 and "vaporctl login" in after.stderr and "Traceback" not in after.stderr


def test_an_expired_login_says_to_log_in_again(stack: Stack, vaporctl: Vaporctl) -> None:
    vaporctl.login(stack.viewer, stack.url)
    saved = json.loads(vaporctl.config_file.read_text())
    saved["logins"][stack.url].update(expires_at=1, refresh_expires_at=1)
    vaporctl.config_file.write_text(json.dumps(saved))
    done = vaporctl("get", "hosts")
    assert done.returncode == 1
    assert "your login has expired" in done.stderr and "vaporctl login" in done.stderr, done.stderr


def test_a_bad_password_is_the_servers_message_and_nothing_is_kept(stack: Stack, vaporctl: Vaporctl) -> None:
    done = vaporctl(
        "login", "--server", stack.url, "-u", stack.admin.name, "--password-stdin", input="not-the-password\n"
    )
    assert done.returncode == 1, done
    assert done.stderr.strip() == "error: invalid username or password; run `vaporctl login`", done.stderr
    assert not vaporctl.config_file.exists()


def test_get_lists_each_kind_as_a_table_and_shows_one_as_json_or_yaml(
    stack: Stack, admin_ctl: Vaporctl, vms_namespace: str, kubectl: Kubectl
) -> None:
    ns = vms_namespace
    vm = new_vm(stack, ns, "tiny")
    image = f"cli-{uuid.uuid4().hex[:8]}"
    with rest(stack) as api:
        r = api.post("/images", json={"name": image, "source": {"upload": {}}, "format": "raw"})
        assert r.status_code == 201, r.text
    try:
        kubectl.apply({
            "apiVersion": "vapor.io/v1alpha1", "kind": "Migration",
            "metadata": {"name": "tiny-move", "namespace": ns},
            "spec": {"vmName": "tiny", "live": False},
        })  # fmt: skip

        hosts = admin_ctl.ok("get", "hosts").splitlines()
        assert hosts[0].split() == ["NAME", "STATUS", "VMS", "CPUS", "MEMORY", "MAINTENANCE"]
        row = next(line.split() for line in hosts if line.startswith(stack.node + " "))
        assert row[1] == "connected"
        assert stack.node in admin_ctl.ok("get", "host", stack.node, "-o", "wide")

        vms = admin_ctl.ok("get", "vms", "-n", ns).splitlines()
        assert vms[0].split()[:4] == ["NAMESPACE", "NAME", "STATUS", "HOST"]
        assert vms[1].split()[:6] == [ns, "tiny", "Stopped", stack.node, "1", "32Mi"]
        assert vm["id"] in admin_ctl.ok("get", "vms", "-n", ns, "-o", "wide")
        assert json.loads(admin_ctl.ok("get", "vm", f"{ns}/tiny", "-o", "json"))["id"] == vm["id"]
        assert yaml.safe_load(admin_ctl.ok("get", "vm", vm["id"], "-o", "yaml"))["name"] == "tiny"
        assert json.loads(admin_ctl.ok("get", "vm", "tiny", "-n", ns, "-o", "json"))["host"] == stack.node

        images = admin_ctl.ok("get", "images")
        assert any(line.split()[:2] == [image, "raw"] for line in images.splitlines()), images
        assert json.loads(admin_ctl.ok("get", "image", image, "-o", "json"))["source"] == {"upload": {}}

        migrations = admin_ctl.ok("get", "migrations", "-n", ns).splitlines()
        assert migrations[0].split()[:4] == ["NAMESPACE", "NAME", "VM", "PHASE"]
        assert migrations[1].split()[:3] == [ns, "tiny-move", "tiny"]

        # the kubectl plugin is the same tool
        assert admin_ctl.ok("get", "vms", "-n", ns, program="kubectl-vapor").splitlines()[1].split()[1] == "tiny"
    finally:
        kubectl("delete", "image", image, "--ignore-not-found", "--wait=false", check=False)


def test_start_restart_and_stop_a_vm(stack: Stack, admin_ctl: Vaporctl, vms_namespace: str) -> None:
    ns = vms_namespace
    new_vm(stack, ns, "power")
    assert "start completed (phase Running)" in admin_ctl.ok("start", "power", "-n", ns)
    assert domain_state(stack, ns, "power") == libvirt.VIR_DOMAIN_RUNNING
    assert "restart completed" in admin_ctl.ok("restart", f"{ns}/power")
    assert domain_state(stack, ns, "power") == libvirt.VIR_DOMAIN_RUNNING
    # a guest without an OS ignores ACPI: only the power-off path stops it promptly
    assert "stop completed (phase Stopped)" in admin_ctl.ok("stop", f"{ns}/power", "--force")
    assert domain_state(stack, ns, "power") == libvirt.VIR_DOMAIN_SHUTOFF


def test_errors_are_one_line_on_stderr_with_the_right_exit_code(
    stack: Stack, vaporctl: Vaporctl, vms_namespace: str
) -> None:
    ns = vms_namespace
    new_vm(stack, ns, "guarded")
    vaporctl.login(stack.viewer, stack.url)

    denied = vaporctl("stop", "guarded", "-n", ns)
    assert denied.returncode == 1
    assert denied.stderr.startswith("error: permission denied: user ") and "role viewer" in denied.stderr
    assert denied.stdout == ""

    unknown = vaporctl("get", "vm", "nope", "-n", ns)
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == (
        f"error: not found: no virtual machine with id 'nope', nor named so in namespace '{ns}'"
    ), unknown.stderr

    refused = vaporctl("--server", f"http://127.0.0.1:{free_port()}", "get", "hosts")
    assert refused.returncode == 1 and "you are not logged in to" in refused.stderr, "no login for that server"
    refused = vaporctl("login", "--server", f"http://127.0.0.1:{free_port()}", "-u", "x", "--password-stdin", input="y")
    assert refused.returncode == 1
    assert "cannot connect to http://127.0.0.1:" in refused.stderr and "connection refused" in refused.stderr

    usage = vaporctl("get", "volumes")
    assert usage.returncode == 2 and "volumes" in usage.stderr
    usage = vaporctl("get", "vm", "a/b/c")
    assert usage.returncode == 2 and "is not NAME, NAMESPACE/NAME or an id" in usage.stderr

    for done in (denied, unknown, refused, usage):
        assert "Traceback" not in done.stderr


def test_kubectl_finds_and_runs_it_as_its_vapor_plugin(
    stack: Stack, admin_ctl: Vaporctl, control_plane: ControlPlane
) -> None:
    env = {**admin_ctl.environment(), "PATH": f"{BIN}:/usr/bin:/bin", "KUBECONFIG": str(control_plane.kubeconfig)}
    kubectl = str(control_plane.kubectl)
    listed = subprocess.run([kubectl, "plugin", "list"], capture_output=True, text=True, env=env, timeout=60)
    assert str(BIN / "kubectl-vapor") in listed.stdout, listed.stdout + listed.stderr
    shown = subprocess.run([kubectl, "vapor", "get", "hosts"], capture_output=True, text=True, env=env, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert any(line.split()[:2] == [stack.node, "connected"] for line in shown.stdout.splitlines()), shown.stdout

"""The agent's image run the way the chart's DaemonSet runs it: users, logins, a terminal and Mounts on its node.

What runs is read from the chart (``helm template``): the container's
command, flags, environment, security context, probe and volume mounts, so
a change to the chart changes what this test runs. No kubelet runs here:
the hermetic dockerd starts the container with the pod's hostNetwork,
hostPID and privileged settings, and the test plays the kubelet's part
(downward-API values, ``$(VAR)`` expansion in args, hostPath volumes as
binds, ``HostToContainer`` as ``rslave``). The kubeconfig is mounted in, as
no ServiceAccount token is projected.

Each hostPath the chart mounts must have an answer in ``node_paths``; the
node's own side is played by stand-ins wherever this machine's would be
touched (tests/support/node.py):

- ``/`` (``--host-root=/host``): a Debian root filesystem, a shared mount;
- ``--mount-namespace-pid=1`` (with hostPID, the node's init): a ``sleep``
  in a mount namespace of its own, since pid 1 here is this machine's init;
- the state folder, the journal folders (with journal files written by
  systemd-journal-remote), machine-id: temporary ones;
- /dev, /sys, /run/udev and the libvirt socket: this machine's, read only
  by the agent (libvirtd is the session's real one).

A gateway in the test's process reaches the agent's node-local API as the
chart's gateway ServiceAccount, over TLS pinned by the Host's status.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.types import Mount
from quart.typing import TestClientProtocol as Client

from tests.agent.conftest import libvirtd  # noqa: F401
from tests.chart.conftest import Helm, helm  # noqa: F401
from tests.conftest import Kubectl
from tests.gateway.conftest import gateway_config, pam_service_name, secret_namespace, users  # noqa: F401
from tests.storage.conftest import loops  # noqa: F401
from tests.storage.loops import LoopDevices, is_mounted
from tests.storage.test_mounts import MOUNT_WAIT, mount_yaml
from tests.support import node as stand_in
from tests.support.journald import write_journal
from tests.support.node import NodeUser, mounted_in
from tests.support.pam import pam_service
from tests.support.wait import eventually
from tests.websockets.conftest import shell_output
from vapor.devenv.processes import free_port
from vapor.gateway import create_app

from .conftest import Built, http_get, run_logs

pytestmark = [pytest.mark.image, pytest.mark.controlplane, pytest.mark.timeout(1800)]

RELEASE = "vapor"
READY_WAIT = 120.0  # the agent registers its Host and connects to libvirt

# Linux capabilities by number (linux/capability.h), to read this machine's bounding set; up to the last one
# Debian 12's Docker knows (it refuses PERFMON, BPF and CHECKPOINT_RESTORE, which the agent does not use).
CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
    "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
    "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ",
)  # fmt: skip


@dataclass
class AgentContainer:
    """The agent's container and what the test needs to reach it."""

    container: docker.models.containers.Container
    node_name: str
    gateway_account: str  # namespace/name: the one ServiceAccount the agent lets in
    ready_url: str
    journals: dict[str, Path]  # the node's journal folders (hostPath -> stand-in) the chart mounts
    machine_id: str  # the node's, which names the journal's own folder in each


def _rendered_agent(chart: Helm, namespace: str, api_port: int, metrics_port: int) -> dict[str, Any]:
    """The agent DaemonSet the chart renders for this namespace, its ports the free ones given."""
    objects = chart.objects(
        RELEASE,
        namespace,
        "--set", f"agent.apiPort={api_port}",
        "--set", f"agent.metricsPort={metrics_port}",
    )  # fmt: skip
    (daemonset,) = [o for o in objects if o["kind"] == "DaemonSet" and o["metadata"]["name"].endswith("-agent")]
    return dict(daemonset)


def _downward(env: list[dict[str, Any]], fields: dict[str, str]) -> dict[str, str]:
    """The container's environment, with the downward-API fields a kubelet would fill in."""
    values = {}
    for item in env:
        if "value" in item:
            values[item["name"]] = str(item["value"])
        else:
            values[item["name"]] = fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
    return values


def _expand(arg: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion in command and args."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), arg)


def _binds(pod: dict[str, Any], container: dict[str, Any], node_paths: Callable[[str], str]) -> list[Mount]:
    """The container's volume mounts as binds of what ``node_paths`` gives for each hostPath."""
    volumes = {v["name"]: v for v in pod["volumes"]}
    binds = []
    for mount in container["volumeMounts"]:
        host_path = volumes[mount["name"]]["hostPath"]["path"]
        propagation = {"HostToContainer": "rslave", "Bidirectional": "rshared"}.get(mount.get("mountPropagation", ""))
        binds.append(
            Mount(
                target=mount["mountPath"],
                source=node_paths(host_path),
                type="bind",
                read_only=bool(mount.get("readOnly")),
                propagation=propagation,
            )
        )
    return binds


def _privileged(docker_client: docker.DockerClient) -> dict[str, Any]:
    """``privileged: true`` as Docker can give it here.

    Docker's privileged mode asks for every capability, and runc fails when
    the machine's own bounding set lacks one (this one has no
    CAP_SYS_RESOURCE, as it runs in a sandbox). Then: every capability it
    does have, no seccomp or AppArmor profile, and every device, which is
    what privileged gives besides.
    """
    status = Path("/proc/self/status").read_text().splitlines()
    bounding = int(next(line.split()[1] for line in status if line.startswith("CapBnd:")), 16)
    have = [name for bit, name in enumerate(CAPABILITIES) if bounding >> bit & 1]
    if len(have) == len(CAPABILITIES):
        return {"privileged": True}
    security = ["seccomp=unconfined"]
    if any("apparmor" in option for option in docker_client.info().get("SecurityOptions") or []):
        security.append("apparmor=unconfined")
    return {"cap_add": have, "security_opt": security, "device_cgroup_rules": ["a *:* rwm"]}


@pytest.fixture
def node_root() -> Iterator[Path]:
    with stand_in.node_root(shared=True) as root:
        yield root


@pytest.fixture
def agent_container(
    docker_client: docker.DockerClient,
    image: Built,
    helm: Helm,  # noqa: F811
    libvirtd: object,  # noqa: F811
    readable_kubeconfig: Path,
    namespace: str,
    kubectl: Kubectl,
    node_root: Path,
    node_init: int,
    tmp_path: Path,
) -> Iterator[AgentContainer]:
    """The agent's image started as the chart's DaemonSet would start it on a node (see the module's docstring)."""
    api_port, metrics_port = free_port(), free_port()
    daemonset = _rendered_agent(helm, namespace, api_port, metrics_port)
    pod = daemonset["spec"]["template"]["spec"]
    (spec,) = pod["containers"]
    node_name = f"boxed-{uuid.uuid4().hex[:8]}"
    env = _downward(
        spec["env"], {"status.hostIP": "127.0.0.1", "spec.nodeName": node_name, "metadata.name": f"{node_name}-pod"}
    )
    argv = [_expand(a, env) for a in [*spec["command"], *spec["args"]]]
    # pid 1 is this machine's init under hostPID: the stand-in's namespace instead.
    argv[argv.index("--mount-namespace-pid=1")] = f"--mount-namespace-pid={node_init}"
    state_dir = next(a.split("=", 1)[1] for a in argv if a.startswith("--state-dir="))

    scratch = tmp_path / "node"
    for folder in ("state", "journal", "journal-volatile", "journal-socket", "udev"):
        (scratch / folder).mkdir(parents=True)  # the chart's DirectoryOrCreate
    for folder in ("var/lib/vapor/images", "var/lib/libvirt/images"):
        (node_root / folder).mkdir(parents=True, exist_ok=True)  # the chart's DirectoryOrCreate
    machine_id = secrets.token_hex(16)
    (scratch / "machine-id").write_text(machine_id + "\n")
    provided = {
        "/": node_root,
        state_dir: scratch / "state",
        "/etc/machine-id": scratch / "machine-id",
        "/etc/os-release": node_root / "usr/lib/os-release",
        "/var/log/journal": scratch / "journal",
        "/run/log/journal": scratch / "journal-volatile",
        "/run/systemd/journal": scratch / "journal-socket",
        "/run/udev": Path("/run/udev") if Path("/run/udev").is_dir() else scratch / "udev",
        # The image folders are followed into the container (HostToContainer): the node's own, in its shared root.
        "/var/lib/vapor/images": node_root / "var/lib/vapor/images",
        "/var/lib/libvirt/images": node_root / "var/lib/libvirt/images",
        "/var/run/libvirt": Path("/var/run/libvirt"),  # the session's libvirtd
        "/dev": Path("/dev"),
        "/sys": Path("/sys"),
    }

    def node_paths(host_path: str) -> str:
        assert host_path in provided, f"the chart mounts the node's {host_path}: say in this test what stands for it"
        return str(provided[host_path])

    allowed = next(a.split("=", 1)[1] for a in argv if a.startswith("--api-allowed-user="))
    _, _, account_namespace, account = allowed.split(":")
    assert account_namespace == namespace
    kubectl("create", "serviceaccount", account, "-n", namespace)

    security = spec["securityContext"]
    container = docker_client.containers.run(
        image.tag,
        argv,
        detach=True,
        name=f"{node_name}-agent",
        network_mode="host" if pod["hostNetwork"] else None,
        pid_mode="host" if pod["hostPID"] else None,
        **(_privileged(docker_client) if security["privileged"] else {}),
        user=f"{security['runAsUser']}:{security['runAsGroup']}",
        environment={**env, "KUBECONFIG": "/kube/kubeconfig"},
        mounts=[
            *_binds(pod, spec, node_paths),
            Mount(target="/kube", source=str(readable_kubeconfig.parent), type="bind", read_only=True),
        ],
    )
    probe = spec["readinessProbe"]["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
    try:
        yield AgentContainer(
            container=container,
            node_name=node_name,
            gateway_account=f"{namespace}/{account}",
            ready_url=f"http://127.0.0.1:{ports[probe['port']]}{probe['path']}",
            journals={path: provided[path] for path in ("/var/log/journal", "/run/log/journal")},
            machine_id=machine_id,
        )
    finally:
        container.stop(timeout=30)
        print(f"--- {container.name} ---\n{run_logs(container)[-6000:]}")
        container.remove(force=True)
        kubectl("delete", "--ignore-not-found", "--wait=false", f"hosts.vapor.io/{node_name}", check=False)


async def _ready(agent: AgentContainer) -> None:
    def ready() -> bool:
        agent.container.reload()
        assert agent.container.status != "exited", run_logs(agent.container)
        return http_get(agent.ready_url)[0] == 200

    await eventually(ready, READY_WAIT, "the agent in its container to be ready", every=1.0)


@pytest.fixture
async def client(
    gateway_config: dict[str, Any],  # noqa: F811
    agent_container: AgentContainer,
    node_admin: NodeUser,
) -> AsyncIterator[Client]:
    """The gateway, logging users in on the boxed agent's node (its own PAM refuses everyone)."""
    await _ready(agent_container)
    with pam_service(refuse_all=True) as refusing:
        config = {
            **gateway_config,
            "AGENT_SERVICE_ACCOUNT": agent_container.gateway_account,
            "DEFAULT_HOST": agent_container.node_name,
            "AUTH_HOSTS": agent_container.node_name,
            "PAM_SERVICE": refusing,
            "ADMIN_GROUPS": node_admin.group,
        }
        async with create_app(config).test_app() as app:
            yield app.test_client()


async def _token(client: Client, name: str, password: str) -> dict[str, Any]:
    response = await client.post("/api/v1/auth/login", json={"username": name, "password": password})
    body = await response.get_json()
    assert response.status_code == 200, body
    return dict(body["data"])


async def test_users_logins_and_terminals_are_the_nodes(client: Client, node_root: Path, node_admin: NodeUser) -> None:
    admin = await _token(client, node_admin.name, node_admin.password)
    assert admin["user"]["role"] == "admin"  # the group exists in the node's root only
    name = f"boxed{uuid.uuid4().hex[:6]}"
    made = await client.post(
        "/api/v1/users",
        json={"username": name, "password": "Boxed-pass-1", "groups": f"users,{node_admin.group}"},
        headers={"Authorization": f"Bearer {admin['token']}"},
    )
    assert made.status_code == 201, await made.get_json()
    assert f"{name}:" in (node_root / "etc/passwd").read_text()  # the node's accounts, not the image's
    user = await _token(client, name, "Boxed-pass-1")  # an admin of the node (terminals are for admins)
    seen = await shell_output(
        client, user["token"], "echo who=$(id -un) marker=$(cat /etc/vapor-marker)", until=f"marker={stand_in.MARKER}"
    )
    assert f"who={name}" in seen  # a shell as the user, in the node's root


async def test_logs_are_the_nodes_journal_persistent_and_volatile(
    client: Client, agent_container: AgentContainer, node_admin: NodeUser
) -> None:
    """GET /logs reads the node's journal through the chart's mounts of its folders and its machine-id."""
    identifier = f"boxed-{uuid.uuid4().hex[:6]}"
    for n, folder in enumerate(agent_container.journals.values()):
        entries = [
            {
                "__REALTIME_TIMESTAMP": 1_700_000_000_000_000 + n * 1_000_000 + i,
                "__MONOTONIC_TIMESTAMP": i + 1,
                "_BOOT_ID": f"{n:032x}",
                "SYSLOG_IDENTIFIER": identifier,
                "PRIORITY": 4,
                "MESSAGE": f"{folder.name} entry {i}",
                "_HOSTNAME": agent_container.node_name,
                "_PID": 100 + i,
            }
            for i in range(2)
        ]
        write_journal(folder / agent_container.machine_id / "system.journal", entries)
    token = (await _token(client, node_admin.name, node_admin.password))["token"]
    response = await client.get(
        "/api/v1/logs", query_string={"service": identifier}, headers={"Authorization": f"Bearer {token}"}
    )
    body = await response.get_json()
    assert response.status_code == 200, body
    assert body["data"]["total_count"] == 4
    assert sorted(e["message"] for e in body["data"]["logs"]) == [
        "journal entry 0",
        "journal entry 1",
        "journal-volatile entry 0",
        "journal-volatile entry 1",
    ]


async def test_mounts_are_made_in_the_nodes_mount_namespace(
    loops: LoopDevices,  # noqa: F811
    agent_container: AgentContainer,
    node_init: int,
    kubectl: Kubectl,
    tmp_path: Path,
) -> None:
    await _ready(agent_container)
    node = agent_container.node_name
    device, target = loops.make(), tmp_path / "data"
    name = f"{node}-data"
    try:
        kubectl.apply(mount_yaml(name, node, device, target, "ext4", label="BOXED"))
        await eventually(lambda: mounted_in(node_init, target), MOUNT_WAIT, "mounted in the node's namespace")
        assert not is_mounted(target)  # not in this machine's namespace
        seen = agent_container.container.exec_run(["findmnt", "--noheadings", str(target)])
        assert seen.exit_code != 0  # nor in the agent container's own

        def phase() -> str | None:
            return kubectl.get_json("mounts.vapor.io", name).get("status", {}).get("phase")

        await eventually(lambda: phase() == "Mounted", MOUNT_WAIT, "status Mounted")
        kubectl("delete", "mounts.vapor.io", name, "--wait=true", "--timeout=60s")
        assert not mounted_in(node_init, target)
    finally:
        no_finalizers = '{"metadata":{"finalizers":null}}'
        kubectl("patch", f"mounts.vapor.io/{name}", "--type=merge", "-p", no_finalizers, check=False)
        kubectl("delete", "--ignore-not-found", f"mounts.vapor.io/{name}", check=False)
        subprocess.run(["nsenter", "-t", str(node_init), "-m", "umount", str(target)], capture_output=True, check=False)

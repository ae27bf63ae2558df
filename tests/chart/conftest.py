"""Fixtures of the chart tests: the pinned helm, rendering, and releases that always go away.

helm comes from ``hack/kube-binaries.sh helm`` (built once from its Go module,
cached under ~/.cache/vapor), with its own config, cache and data folders in a
temporary folder so that nothing of the user's helm setup is read or changed.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Kubectl
from tests.support.processes import ComponentProcess
from vapor.devenv import ControlPlane
from vapor.devenv.processes import free_port

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "vapor"


@dataclass
class Helm:
    """The pinned helm, pointed at the session's control plane."""

    path: Path
    env: dict[str, str]
    kubeconfig: Path

    def __call__(
        self, *args: str, check: bool = True, cluster: bool = False, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.path), *args]
        if cluster:
            cmd += ["--kubeconfig", str(self.kubeconfig)]
        result = subprocess.run(cmd, input=input, capture_output=True, text=True, env=self.env, timeout=180, cwd=REPO)
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed (exit {result.returncode}):\n{result.stderr}")
        return result

    def template(self, release: str, namespace: str, *values: str) -> str:
        """The manifests the chart renders (``values``: extra helm flags such as --set a=b)."""
        return self("template", release, str(CHART), "--namespace", namespace, *values).stdout

    def objects(self, release: str, namespace: str, *values: str) -> list[dict[str, Any]]:
        return [doc for doc in yaml.safe_load_all(self.template(release, namespace, *values)) if doc]


@pytest.fixture(scope="session")
def helm(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    folder = subprocess.run(
        ["bash", str(REPO / "hack" / "kube-binaries.sh"), "helm"],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    ).stdout.strip()
    home = tmp_path_factory.mktemp("helm-home")
    env = {
        **os.environ,
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
        # kubectl kustomize --enable-helm finds helm on PATH; so does kubectl.
        "PATH": f"{folder}:{control_plane.bin_dir}:{os.environ.get('PATH', '')}",
    }
    env.pop("KUBECONFIG", None)
    return Helm(Path(folder) / "helm", env, control_plane.kubeconfig)


def release_name() -> str:
    """A release name no other test uses (its ClusterRoles are named after it)."""
    return f"v{uuid.uuid4().hex[:8]}"


@pytest.fixture
def release(helm: Helm, namespace: str) -> Iterator[str]:
    """A release name in the test's namespace, uninstalled (if installed) after the test."""
    name = release_name()
    yield name
    helm("uninstall", name, "--namespace", namespace, "--ignore-not-found", cluster=True, check=False)


@pytest.fixture
def installed(helm: Helm, kubectl: Kubectl, namespace: str, release: str) -> Iterator[str]:
    """The chart installed in the test's namespace; what the components made there is removed after."""
    helm("install", release, str(CHART), "--namespace", namespace, cluster=True)
    yield release
    kubectl("delete", "secrets,events,leases", "--all", "-n", namespace, "--wait=false", check=False)


def _kubeconfig_with(control_plane: ControlPlane, token: str, path: Path) -> Path:
    config: dict[str, Any] = yaml.safe_load(control_plane.kubeconfig.read_text())
    for user in config["users"]:
        user["user"] = {"token": token}
    path.write_text(yaml.safe_dump(config))
    return path


def kubeconfig_as(control_plane: ControlPlane, kubectl: Kubectl, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig that authenticates with a fresh token of the ServiceAccount (TokenRequest API)."""
    token = kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout.strip()
    return _kubeconfig_with(control_plane, token, path)


@contextmanager
def node_bound_kubeconfig(
    control_plane: ControlPlane, kubectl: Kubectl, namespace: str, account: str, node: str, path: Path
) -> Iterator[Path]:
    """A kubeconfig with the token the kubelet mounts in the account's pod on ``node``.

    No kubelet runs here, so the test does its part: a Node object, a Pod of
    the account bound to it (never started), and a token bound to that Pod.
    The API server then adds the Pod's node to every request's user info
    (``authentication.kubernetes.io/node-name``), as for a DaemonSet pod.
    Node and Pod are removed afterwards.
    """
    pod = f"agent-{node}"[:63]
    kubectl.apply({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pod, "namespace": namespace},
            "spec": {
                "nodeName": node,
                "serviceAccountName": account,
                "containers": [{"name": "agent", "image": "vapor-agent-stand-in"}],
            },
        }
    )
    try:
        token = kubectl(
            "create", "token", account, "-n", namespace, "--duration=1h",
            "--bound-object-kind=Pod", f"--bound-object-name={pod}",
        ).stdout.strip()  # fmt: skip
        yield _kubeconfig_with(control_plane, token, path)
    finally:
        kubectl("delete", "pod", pod, "-n", namespace, "--wait=false", "--grace-period=0", check=False)
        kubectl("delete", "node", node, "--wait=false", check=False)


def as_in_its_pod(
    kubectl: Kubectl, namespace: str, deployment: str, kubeconfig: Path
) -> tuple[list[str], dict[str, str]]:
    """The arguments and environment the chart gives a component's container, on loopback here.

    The environment: its literal values, and the pod's name and namespace where the chart has them
    from the pod's own fields (the Downward API), as the kubelet would fill them in.
    """
    spec = kubectl.get_json("deployment", deployment, "-n", namespace)["spec"]["template"]["spec"]
    container = spec["containers"][0]
    args = [arg.replace("0.0.0.0", "127.0.0.1") for arg in container.get("args", [])]
    fields = {"metadata.namespace": namespace, "metadata.name": f"{deployment}-test"}
    env = {
        e["name"]: e["value"] if "value" in e else fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
        for e in container.get("env", [])
        if "value" in e or e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") in fields
    }
    return [*args, f"--kubeconfig={kubeconfig}"], env


def agent_as_in_its_pod(
    kubectl: Kubectl,
    namespace: str,
    release: str,
    node: str,
    kubeconfig: Path,
    state: Path,
    libvirt_uri: str,
    log: Path,
    lease_renew_interval: float = 1.0,
) -> ComponentProcess:
    """The agent with the chart's arguments on ``node``, as a not yet started process logging to ``log``.

    A state folder and libvirt of this machine instead of the node's, free ports instead of the
    node's, a scan every second and the Lease renewed every ``lease_renew_interval`` seconds.
    """
    spec = kubectl.get_json("daemonset", f"{release}-vapor-agent", "-n", namespace)["spec"]["template"]["spec"]
    args = [
        a
        for a in spec["containers"][0]["args"]
        if not a.startswith(("--state-dir=", "--libvirt-uri=", "--metrics-bind=", "--api-bind="))
    ]
    return ComponentProcess(
        "vapor.agent",
        [
            *args,
            f"--kubeconfig={kubeconfig}",
            f"--state-dir={state}",
            f"--libvirt-uri={libvirt_uri}",
            "--scan-interval=1",
            f"--lease-renew-interval={lease_renew_interval}",
            f"--metrics-bind=127.0.0.1:{free_port()}",  # the node's port in the chart; any free one here
            f"--api-bind=127.0.0.1:{free_port()}",  # $(NODE_IP):9443 in the chart
        ],
        log,
        {"NODE_NAME": node},
    )

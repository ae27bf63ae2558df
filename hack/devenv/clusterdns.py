"""The cluster's DNS: CoreDNS as a Deployment behind the ``kube-dns`` Service, the way clusters run it.

Its image holds only the static ``coredns`` binary (built from its Go module
by ``hack/kube-binaries.sh coredns`` and cached), made and imported into the
nodes' containerd without a registry (images.py). The kubelet gives every pod
``SERVICE_ADDRESS`` as its name server and ``DOMAIN`` as its search domain
(node.py), so ``kubernetes.default.svc`` resolves in a pod. CoreDNS reads the
Services through the ``kubernetes`` Service, which kube-proxy makes work
(kubeproxy.py). Names outside the cluster are not forwarded anywhere: the
nodes have no way out to the machine's resolvers.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path
from typing import Any

from .containerd import Runtime
from .controlplane import ControlPlane, ControlPlaneError
from .images import image_archive

SERVICE_ADDRESS = "10.0.0.10"  # in the control plane's SERVICE_CIDR
DOMAIN = "cluster.local"
NAMESPACE = "kube-system"
NAME = "coredns"
LABELS = {"k8s-app": "kube-dns"}

COREFILE = f"""\
.:53 {{
    errors
    health :8080
    ready :8181
    kubernetes {DOMAIN} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 30
    loop
}}
"""


def image(binary: Path) -> tuple[str, bytes]:
    """The reference and ``docker save`` archive of an image holding ``binary`` as /coredns."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        tar.add(str(binary), arcname="coredns")
    digest = f"{binary.stat().st_size:x}-{int(binary.stat().st_mtime):x}"  # a new build is a new image
    reference = f"vapor.local/coredns:{digest}"
    return reference, image_archive(reference, ["/coredns"], layer.getvalue())


def manifests(reference: str) -> list[dict[str, Any]]:
    """What CoreDNS needs: its account and rights, its Corefile, the Deployment and the ``kube-dns`` Service."""
    meta = {"name": NAME, "namespace": NAMESPACE}
    port = {"containerPort": 53}
    pod = {
        "serviceAccountName": NAME,
        "dnsPolicy": "Default",  # not itself
        "containers": [
            {
                "name": NAME,
                "image": reference,
                "imagePullPolicy": "Never",
                "command": ["/coredns", "-conf", "/etc/coredns/Corefile"],
                "ports": [{**port, "name": "dns", "protocol": "UDP"}, {**port, "name": "dns-tcp", "protocol": "TCP"}],
                "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}],
                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 1},
                "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}, "periodSeconds": 10},
            }
        ],
        "volumes": [{"name": "config", "configMap": {"name": NAME}}],
    }
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": f"vapor-devenv:{NAME}"},
            "rules": [
                {"apiGroups": [""], "resources": ["services", "namespaces", "pods"], "verbs": ["list", "watch"]},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": f"vapor-devenv:{NAME}"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": f"vapor-devenv:{NAME}"},
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}],
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"Corefile": COREFILE}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {**meta, "labels": LABELS},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": LABELS},
                "template": {"metadata": {"labels": LABELS}, "spec": pod},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": NAMESPACE, "labels": LABELS},
            "spec": {
                "selector": LABELS,
                "clusterIP": SERVICE_ADDRESS,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                ],
            },
        },
    ]


def install(cp: ControlPlane, runtimes: list[Runtime], binary: Path) -> None:
    """Import the image into every node and apply the manifests (``wait_ready`` waits for it to answer)."""
    reference, archive = image(binary)
    for runtime in runtimes:
        runtime.import_image(archive)
    listed = {"apiVersion": "v1", "kind": "List", "items": manifests(reference)}
    cp.kubectl_run("apply", "--server-side", "--field-manager=vapor-devenv", "-f", "-", input=json.dumps(listed))


def wait_ready(cp: ControlPlane, timeout: float = 60.0) -> None:
    """Wait until the ``kube-dns`` Service has a ready endpoint (CoreDNS answers its readiness probe)."""
    deadline = time.monotonic() + timeout
    selector = "kubernetes.io/service-name=kube-dns"
    while True:
        found = cp.kubectl_run("get", "endpointslices", "-n", NAMESPACE, "-l", selector, "-o", "json", check=False)
        slices = json.loads(found.stdout).get("items", []) if found.returncode == 0 else []
        if any(e.get("conditions", {}).get("ready") for s in slices for e in s.get("endpoints") or []):
            return
        if time.monotonic() > deadline:
            pods = cp.kubectl_run("get", "pods", "-n", NAMESPACE, "-l", "k8s-app=kube-dns", "-o", "wide", check=False)
            logs = cp.kubectl_run("logs", "-n", NAMESPACE, f"deployment/{NAME}", "--tail=20", check=False)
            raise ControlPlaneError(
                f"CoreDNS not ready after {timeout:.0f}s:\n{pods.stdout}{pods.stderr}\n"
                f"its log:\n{logs.stdout}{logs.stderr}"
            )
        time.sleep(0.5)

"""The chart on its own: lint, rendering with default and other values, the values schema, one CRD source.

No cluster is asked here; what the rendered objects are worth to an API server
is in test_install.py.
"""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path
from typing import Any

import pytest

from .conftest import CHART, REPO, Helm

pytestmark = pytest.mark.chart

OTHER_VALUES = [
    "--set", "image.repository=registry.example.com/vapor",
    "--set", "image.tag=1.2.3",
    "--set", "imagePullSecrets[0]=pull-me",
    "--set", "commonLabels.team=infra",
    "--set", "operator.verbose=true",
    "--set", "operator.healthInterval=2",
    "--set", "operator.cpuAllocationRatio=4",
    "--set", "agent.logFormat=text",
    "--set", "agent.nodeSelector.vapor\\.io/hypervisor=yes",
    "--set", "gateway.replicas=3",
    "--set", "gateway.hostUsers=true",
    "--set", "gateway.authHosts={node-1,node-2}",
    "--set", "agent.pamService=vapor-login",
    "--set", "agent.imageDirs={/srv/images}",
    "--set", "agent.blockDevices={/dev/disk/by-id/nvme-data}",
    "--set", "gateway.rateLimit=0",
    "--set", "gateway.loginRateLimit=5",
    "--set", "gateway.refreshFamilyLifetime=86400",
    "--set", "gateway.trustedProxies=10.0.0.0/8",
    "--set", "gateway.defaultHost=node-2",
    "--set", "gateway.service.type=NodePort",
    "--set", "gateway.service.nodePort=30080",
    "--set", "gateway.ingress.enabled=true",
    "--set", "gateway.ingress.host=vapor.test",
    "--set", "gateway.ingress.tlsSecretName=vapor-tls",
]  # fmt: skip


def by_kind(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def container(obj: dict[str, Any]) -> dict[str, Any]:
    return dict(obj["spec"]["template"]["spec"]["containers"][0])


def env_of(obj: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "<from>") for e in container(obj).get("env", [])}


def test_lint_passes_with_default_and_other_values(helm: Helm) -> None:
    assert "0 chart(s) failed" in helm("lint", str(CHART), "--strict").stdout
    assert "0 chart(s) failed" in helm("lint", str(CHART), "--strict", *OTHER_VALUES).stdout


def test_defaults_render_one_object_set_per_component(helm: Helm) -> None:
    objects = by_kind(helm.objects("vapor", "vapor-system"))
    assert set(objects) == {
        ("ServiceAccount", "vapor-operator"),
        ("ClusterRole", "vapor-operator"),
        ("ClusterRoleBinding", "vapor-operator"),
        ("Role", "vapor-operator-migration-ca"),  # the migration CA's Secret, by name
        ("RoleBinding", "vapor-operator-migration-ca"),
        ("Deployment", "vapor-operator"),
        ("Service", "vapor-operator-metrics"),
        ("CustomResourceDefinition", "clusterkopfpeerings.kopf.dev"),
        ("CustomResourceDefinition", "kopfpeerings.kopf.dev"),
        ("Service", "vapor-agent-metrics"),
        ("ServiceAccount", "vapor-agent"),
        ("ClusterRole", "vapor-agent"),
        ("ClusterRoleBinding", "vapor-agent"),
        ("Role", "vapor-agent"),
        ("RoleBinding", "vapor-agent"),
        ("Role", "vapor-agent-cloud-init"),  # get Secrets in agent.cloudInitSecretNamespaces (default)
        ("RoleBinding", "vapor-agent-cloud-init"),
        ("DaemonSet", "vapor-agent"),
        ("ValidatingAdmissionPolicy", "vapor-agent-node-identity"),
        ("ValidatingAdmissionPolicyBinding", "vapor-agent-node-identity"),
        ("ServiceAccount", "vapor-gateway"),
        ("ClusterRole", "vapor-gateway"),
        ("ClusterRoleBinding", "vapor-gateway"),
        ("Role", "vapor-gateway"),
        ("RoleBinding", "vapor-gateway"),
        ("Deployment", "vapor-gateway"),
        ("Service", "vapor-gateway"),
        # What REST users may do through /api/v1/kubernetes (the gateway acts as them).
        ("ClusterRole", "vapor-users-crds"),
        ("ClusterRoleBinding", "vapor-users-crds"),
        ("ClusterRole", "vapor-users-vapor-admin"),
        ("ClusterRoleBinding", "vapor-users-vapor-admin"),
        ("RoleBinding", "vapor-users-admins-edit"),
        ("RoleBinding", "vapor-users-viewers-view"),
    }
    # No Secret: the gateway makes its signing key once, so upgrades keep it.
    assert not any(kind == "Secret" for kind, _ in objects)
    for component in ("operator", "gateway"):
        deployment = objects[("Deployment", f"vapor-{component}")]
        assert container(deployment)["image"] == "ghcr.io/vapor/vapor:0.1.0"
        assert container(deployment)["command"] == [f"vapor-{component}"]
        assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == f"vapor-{component}"
    # Two operator replicas that peer: one acts, the other waits to take over.
    operator = objects[("Deployment", "vapor-operator")]
    assert operator["spec"]["replicas"] == 2 and operator["spec"]["strategy"]["type"] == "RollingUpdate"
    assert "--peering" in container(operator)["args"]
    assert container(operator)["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "liveness"}
    peering_rules = [r for r in objects[("ClusterRole", "vapor-operator")]["rules"] if "kopf.dev" in r["apiGroups"]]
    assert peering_rules == [
        {"apiGroups": ["kopf.dev"], "resources": ["clusterkopfpeerings"], "verbs": ["list", "watch", "patch", "create"]}
    ]
    gateway = objects[("Deployment", "vapor-gateway")]
    assert env_of(gateway)["VAPOR_SECRET_NAMESPACE"] == "vapor-system"
    assert container(gateway)["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container(gateway)["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert gateway["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert objects[("Service", "vapor-gateway")]["spec"]["ports"][0]["targetPort"] == "http"


def test_agent_runs_privileged_on_the_node_with_its_paths(helm: Helm) -> None:
    agent = by_kind(helm.objects("vapor", "vapor-system"))[("DaemonSet", "vapor-agent")]
    pod = agent["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["hostPID"] is True
    assert container(agent)["securityContext"]["privileged"] is True
    assert container(agent)["securityContext"]["runAsUser"] == 0  # the image's own user is not root
    assert "--metrics-bind=0.0.0.0:9464" in container(agent)["args"]
    assert container(agent)["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    # A new agent's pod turns Ready at a probe: every 2 s, so that in a rolling upgrade the next node's
    # agent is not held back for up to a period after this one answers; 30 s of failures before not Ready.
    readiness = container(agent)["readinessProbe"]
    assert readiness["periodSeconds"] == 2 and readiness["periodSeconds"] * readiness["failureThreshold"] == 30
    assert container(agent)["command"] == ["vapor-agent"]
    assert "--lease-namespace=vapor-system" in container(agent)["args"]
    node_name = next(e for e in container(agent)["env"] if e["name"] == "NODE_NAME")
    assert node_name["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    host_paths = {v["hostPath"]["path"] for v in pod["volumes"]}
    assert {
        "/var/run/libvirt",
        "/dev",
        "/run/udev",
        "/",
        "/var/log/journal",
        "/run/log/journal",
        "/run/systemd/journal",
        "/sys",
        "/var/lib/vapor",
    } <= host_paths
    mounts = {m["name"]: m["mountPath"] for m in container(agent)["volumeMounts"]}
    assert mounts["root"] == "/host" and mounts["machine-id"] == "/etc/machine-id"
    assert "--host-root=/host" in container(agent)["args"]  # users, logins and terminals are the node's
    assert "--pam-service=login" in container(agent)["args"]
    assert "--mount-namespace-pid=1" in container(agent)["args"]  # Mounts are the node's, not the container's
    assert "--docker-host=unix:///host/var/run/docker.sock" in container(agent)["args"]
    assert "--cri-socket=/host/run/containerd/containerd.sock" in container(agent)["args"]
    # VM disks named by path: images in the image folders (mounted at their node paths, read-only), no device.
    assert {"--image-dir=/var/lib/vapor/images", "--image-dir=/var/lib/libvirt/images"} <= set(container(agent)["args"])
    assert not [a for a in container(agent)["args"] if a.startswith("--block-device")]
    assert {"/var/lib/vapor/images", "/var/lib/libvirt/images"} <= host_paths
    images = {m["mountPath"] for m in container(agent)["volumeMounts"] if m["name"].startswith("image-dir-")}
    assert images == {"/var/lib/vapor/images", "/var/lib/libvirt/images"}
    assert all(m["readOnly"] for m in container(agent)["volumeMounts"] if m["name"].startswith("image-dir-"))
    gateway = by_kind(helm.objects("vapor", "vapor-system"))[("Deployment", "vapor-gateway")]
    assert "VAPOR_AUTH_HOSTS" not in env_of(gateway)  # unset by default: the gateway's own PAM
    assert "VAPOR_DEFAULT_HOST" not in env_of(gateway)  # unset by default: the only (connected) host
    assert mounts["state"] == "/var/lib/vapor"


def _bytes(quantity: str) -> int:
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}
    return int(quantity[:-2]) * units[quantity[-2:]] if quantity[-2:] in units else int(quantity)


@pytest.mark.parametrize(("flags", "formats"), [([], ["json"] * 3), (["--set", "logFormat=logfmt"], ["logfmt"] * 3)])
def test_one_log_format_for_every_component(helm: Helm, flags: list[str], formats: list[str]) -> None:
    workloads = sorted(
        (o for o in helm.objects("vapor", "vapor-system", *flags) if o["kind"] in ("Deployment", "DaemonSet")),
        key=lambda o: o["metadata"]["name"],
    )
    chosen = [a.split("=", 1)[1] for o in workloads for a in container(o)["args"] if a.startswith("--log-format=")]
    assert chosen == formats


def test_every_component_has_memory_requests_and_limits(helm: Helm) -> None:
    """No component can take a node's memory: each container asks for some and is held to a limit."""
    workloads = [o for o in helm.objects("vapor", "vapor-system") if o["kind"] in ("Deployment", "DaemonSet")]
    assert len(workloads) == 3
    for workload in workloads:
        for item in workload["spec"]["template"]["spec"]["containers"]:
            memory = {k: item.get("resources", {}).get(k, {}).get("memory") for k in ("requests", "limits")}
            assert memory["requests"] and memory["limits"], (workload["metadata"]["name"], memory)
            assert _bytes(memory["requests"]) <= _bytes(memory["limits"])


def test_other_values_reach_the_objects(helm: Helm) -> None:
    objects = by_kind(helm.objects("edge", "infra", *OTHER_VALUES))
    gateway = objects[("Deployment", "edge-vapor-gateway")]
    assert gateway["spec"]["replicas"] == 3
    assert container(gateway)["image"] == "registry.example.com/vapor:1.2.3"
    assert gateway["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "pull-me"}]
    assert gateway["metadata"]["labels"]["team"] == "infra"
    assert env_of(gateway)["VAPOR_RATE_LIMIT"] == "0"
    assert env_of(gateway)["VAPOR_LOGIN_RATE_LIMIT"] == "5"
    assert env_of(gateway)["VAPOR_REFRESH_FAMILY_LIFETIME"] == "86400"
    assert env_of(gateway)["VAPOR_SECRET_NAMESPACE"] == "infra"
    assert env_of(gateway)["VAPOR_AUTH_HOSTS"] == "node-1,node-2"
    assert env_of(gateway)["VAPOR_AUTH_TIMEOUT"] == "10"
    assert env_of(gateway)["VAPOR_TRUSTED_PROXIES"] == "10.0.0.0/8"
    assert env_of(gateway)["VAPOR_DEFAULT_HOST"] == "node-2"
    # hostUsers: the node's user files, read-only, and root to read the shadow file.
    assert gateway["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 0
    assert {m["mountPath"] for m in container(gateway)["volumeMounts"] if m.get("readOnly")} == {
        "/etc/passwd",
        "/etc/group",
        "/etc/shadow",
        "/var/run/secrets/vapor/agent-token",  # its token for the agents (audience vapor-agent)
    }
    operator = objects[("Deployment", "edge-vapor-operator")]
    assert "--verbose" in container(operator)["args"]
    assert env_of(operator)["VAPOR_HEALTH_INTERVAL"] == "2"
    assert env_of(operator)["VAPOR_CPU_ALLOCATION_RATIO"] == "4"
    agent = objects[("DaemonSet", "edge-vapor-agent")]
    assert "--log-format=text" in container(agent)["args"]
    assert "--pam-service=vapor-login" in container(agent)["args"]
    assert [a for a in container(agent)["args"] if a.startswith(("--image-dir", "--block-device"))] == [
        "--image-dir=/srv/images",
        "--block-device=/dev/disk/by-id/nvme-data",
    ]
    assert "/srv/images" in {v["hostPath"]["path"] for v in agent["spec"]["template"]["spec"]["volumes"]}
    assert agent["spec"]["template"]["spec"]["nodeSelector"] == {"vapor.io/hypervisor": "yes"}
    service = objects[("Service", "edge-vapor-gateway")]
    assert service["spec"]["type"] == "NodePort" and service["spec"]["ports"][0]["nodePort"] == 30080
    ingress = objects[("Ingress", "edge-vapor-gateway")]
    assert ingress["spec"]["rules"][0]["host"] == "vapor.test"
    assert ingress["spec"]["tls"] == [{"hosts": ["vapor.test"], "secretName": "vapor-tls"}]


def test_one_operator_runs_standalone_without_peering_objects(helm: Helm) -> None:
    objects = by_kind(helm.objects("vapor", "vapor-system", "--set", "operator.replicas=1"))
    operator = objects[("Deployment", "vapor-operator")]
    assert operator["spec"]["replicas"] == 1 and operator["spec"]["strategy"] == {"type": "Recreate"}
    assert "--peering" not in container(operator)["args"]
    assert not [k for k in objects if k[0] == "CustomResourceDefinition"]
    assert not any("kopf.dev" in r["apiGroups"] for r in objects[("ClusterRole", "vapor-operator")]["rules"])


MONITORING = ["--api-versions", "monitoring.coreos.com/v1"]


@pytest.mark.parametrize(
    ("flags", "monitors"),
    [
        ([], 0),  # off by default
        (["--set", "serviceMonitor.enabled=true"], 0),  # asked for, but the cluster has no Prometheus Operator
        (MONITORING, 0),  # the CRD is there, but not asked for
        (["--set", "serviceMonitor.enabled=true", *MONITORING], 3),
    ],
)
def test_service_monitors_only_when_enabled_and_served(helm: Helm, flags: list[str], monitors: int) -> None:
    objects = helm.objects("vapor", "vapor-system", *flags)
    found = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ServiceMonitor"}
    assert len(found) == monitors
    if not monitors:
        return
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    for component, port in (("operator", "metrics"), ("agent", "metrics"), ("gateway", "http")):
        monitor = found[f"vapor-{component}"]
        assert monitor["spec"]["endpoints"] == [{"port": port, "path": "/metrics", "interval": "30s"}]
        # The selector finds exactly one Service, and it has the named port.
        selector = monitor["spec"]["selector"]["matchLabels"]
        matching = [s for s in services.values() if selector.items() <= s["metadata"]["labels"].items()]
        assert len(matching) == 1, (component, [s["metadata"]["name"] for s in matching])
        assert port in {p["name"] for p in matching[0]["spec"]["ports"]}


def test_a_digest_pins_the_image(helm: Helm) -> None:
    digest = "sha256:" + "ab" * 32
    objects = helm.objects("vapor", "vapor-system", "--set", f"image.digest={digest}")
    images = {container(o)["image"] for o in objects if o["kind"] in ("Deployment", "DaemonSet")}
    assert images == {f"ghcr.io/vapor/vapor@{digest}"}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--set", "gateway.replcas=2"], "at '/gateway': additional properties 'replcas' not allowed"),
        (["--set", "gateway.replicas=-1"], "at '/gateway/replicas': minimum: got -1, want 0"),
        (["--set", "agent.logFormat=xml"], "at '/agent/logFormat': value must be one of '', 'json', 'logfmt', 'text'"),
        (["--set", "logFormat=xml"], "at '/logFormat': value must be one of 'json', 'logfmt', 'text'"),
        (["--set", "agent.reservedMemory=lots"], "at '/agent/reservedMemory'"),
        (["--set", "gateway.service.type=External"], "at '/gateway/service/type'"),
        (["--set", "colour=blue"], "additional properties 'colour' not allowed"),
        # Behind the chart's Ingress every request comes from the ingress controller: without the
        # networks of its pods every user would share one client's rate limit.
        (["--set", "gateway.ingress.enabled=true"], "at '/gateway/trustedProxies': minLength: got 0, want 1"),
        (["--set", "gateway.loginRateLimit=-1"], "at '/gateway/loginRateLimit'"),
        (["--set", "agent.imageDirs={images}"], "at '/agent/imageDirs/0'"),
        (["--set", "agent.blockDevices={/etc/shadow}"], "at '/agent/blockDevices/0'"),
        (["--set", "operator.cpuAllocationRatio=0"], "at '/operator/cpuAllocationRatio'"),
    ],
)
def test_the_schema_rejects_bad_values(helm: Helm, flags: list[str], message: str) -> None:
    result = helm("template", "vapor", str(CHART), *flags, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr


def test_every_value_is_commented() -> None:
    """Each key the schema defines has a comment line right above it."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    lines = (CHART / "values.yaml").read_text().splitlines()
    path: list[tuple[int, str]] = []  # (indent, key) of the keys enclosing the current line
    for number, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z][A-Za-z0-9]*):", line)
        if not match:
            continue
        indent, key = len(match[1]), match[2]
        path = [(i, k) for i, k in path if i < indent]
        node = schema
        for _, parent in path:
            node = node.get("properties", {}).get(parent, {})
        path.append((indent, key))
        if key not in node.get("properties", {}) or any(k == "resources" for _, k in path[:-1]):
            continue  # inside a Kubernetes structure (resources, nodeSelector): Kubernetes documents it
        above = lines[number - 1].strip() if number else ""
        assert above.startswith("#"), f"values.yaml:{number + 1} has no comment right above it: {line.strip()}"


def test_the_chart_takes_its_crds_from_the_one_source(helm: Helm, tmp_path: Path) -> None:
    """charts/vapor/crds is a link to crds/, and helm packages what it points to."""
    link = CHART / "crds"
    assert link.is_symlink() and link.resolve() == (REPO / "crds").resolve()
    helm("package", str(CHART), "--destination", str(tmp_path))
    with tarfile.open(tmp_path / "vapor-0.1.0.tgz") as archive:
        packaged = {
            Path(m.name).name: archive.extractfile(m).read()  # type: ignore[union-attr]
            for m in archive.getmembers()
            if m.name.startswith("vapor/crds/")
        }
    assert packaged == {p.name: p.read_bytes() for p in sorted((REPO / "crds").glob("*.yaml"))}


def test_agents_read_cloud_init_secrets_only_in_the_listed_namespaces_never_the_release_one(helm: Helm) -> None:
    objects = helm.objects(
        "vapor", "vapor-system", "--set", "agent.cloudInitSecretNamespaces={vapor-system,tenant-a,tenant-b}"
    )
    roles = [o for o in objects if o["kind"] == "Role" and o["metadata"]["name"] == "vapor-agent-cloud-init"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["tenant-a", "tenant-b"]
    assert all(r["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}] for r in roles)
    agent_cluster_role = next(
        o for o in objects if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "vapor-agent"
    )
    assert not any("secrets" in rule.get("resources", []) for rule in agent_cluster_role["rules"])

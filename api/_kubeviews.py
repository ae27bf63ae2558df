"""Pods, deployments, services and CRDs as ``kubectl get`` shows them: the rows of /api/v1/kubernetes.

Plain functions of the API server's objects (dicts: these kinds have no
model here) and the time, so that tests can check each column directly.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field


class PodView(BaseModel):
    """A pod, as kubectl get pods shows it."""

    name: str
    namespace: str
    status: str = Field(description="Phase, or why it is not running (ContainerCreating, CrashLoopBackOff, ...).")
    ready: str = Field(description="Ready containers out of all, for example 1/1.")
    restarts: int = Field(description="Container restarts, summed.")
    age: str = Field(description="Time since creation, for example 2d.")
    ip: str | None = Field(default=None, description="The pod's IP, once it has one.")
    node: str | None = Field(default=None, description="The node it runs on, once scheduled.")


class PodList(BaseModel):
    """Pods, by namespace and name."""

    pods: list[PodView]


class DeploymentView(BaseModel):
    """A deployment, as kubectl get deployments shows it."""

    name: str
    namespace: str
    ready: str = Field(description="Ready replicas out of desired, for example 3/3.")
    up_to_date: int = Field(description="Replicas running the latest template.")
    available: int = Field(description="Replicas available to serve.")
    age: str
    images: list[str] = Field(description="Container images of the template.")


class DeploymentList(BaseModel):
    """Deployments, by namespace and name."""

    deployments: list[DeploymentView]


class ServiceView(BaseModel):
    """A service, as kubectl get services shows it."""

    name: str
    namespace: str
    type: str = Field(description="ClusterIP, NodePort, LoadBalancer or ExternalName.")
    cluster_ip: str | None = None
    external_ip: str | None = Field(default=None, description="Load balancer or external addresses, comma-separated.")
    ports: list[str] = Field(description="Ports as kubectl shows them, for example 80/TCP or 80:30080/TCP.")
    age: str


class ServiceList(BaseModel):
    """Services, by namespace and name."""

    services: list[ServiceView]


class CRDView(BaseModel):
    """A CustomResourceDefinition: what kind it adds, in which group and version."""

    name: str
    group: str
    version: str = Field(description="The storage version.")
    kind: str
    scope: str = Field(description="Namespaced or Cluster.")
    age: str


class CRDList(BaseModel):
    """CustomResourceDefinitions, by name."""

    crds: list[CRDView]


def age(timestamp: str | None, now: datetime | None = None) -> str:
    """A short age like kubectl's: 45s, 12m, 5h, 3d, 2y."""
    if not timestamp:
        return "<unknown>"
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    seconds = max(0, int(((now or datetime.now(UTC)) - then).total_seconds()))
    for unit, size in (("y", 365 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit == "m" else 1):
            return f"{math.floor(seconds / size)}{unit}"
    return f"{seconds}s"


def pod_status(pod: dict[str, Any]) -> str:
    """What kubectl shows in STATUS: the phase, unless a container says why it is not running."""
    if pod["metadata"].get("deletionTimestamp"):
        return "Terminating"
    status = pod.get("status") or {}
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        reason = (state.get("waiting") or {}).get("reason") or (state.get("terminated") or {}).get("reason")
        if reason:
            return str(reason)
    return str(status.get("reason") or status.get("phase") or "Unknown")


def pod_view(pod: dict[str, Any], now: datetime) -> PodView:
    """One pod's row."""
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    containers = status.get("containerStatuses") or []
    ready = sum(1 for c in containers if c.get("ready"))
    return PodView(
        name=meta["name"],
        namespace=meta.get("namespace", ""),
        status=pod_status(pod),
        ready=f"{ready}/{len(spec.get('containers') or [])}",
        restarts=sum(int(c.get("restartCount") or 0) for c in containers),
        age=age(meta.get("creationTimestamp"), now),
        ip=status.get("podIP"),
        node=spec.get("nodeName"),
    )


def deployment_view(deployment: dict[str, Any], now: datetime) -> DeploymentView:
    """One deployment's row."""
    meta, spec, status = deployment["metadata"], deployment.get("spec") or {}, deployment.get("status") or {}
    desired = spec.get("replicas", 1)
    template = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    return DeploymentView(
        name=meta["name"],
        namespace=meta.get("namespace", ""),
        ready=f"{status.get('readyReplicas', 0)}/{desired}",
        up_to_date=int(status.get("updatedReplicas", 0)),
        available=int(status.get("availableReplicas", 0)),
        age=age(meta.get("creationTimestamp"), now),
        images=[str(c.get("image", "")) for c in template],
    )


def _port(port: dict[str, Any]) -> str:
    node_port = f":{port['nodePort']}" if port.get("nodePort") else ""
    return f"{port.get('port')}{node_port}/{port.get('protocol', 'TCP')}"


def service_view(service: dict[str, Any], now: datetime) -> ServiceView:
    """One service's row."""
    meta, spec, status = service["metadata"], service.get("spec") or {}, service.get("status") or {}
    ingress = (status.get("loadBalancer") or {}).get("ingress") or []
    external = [str(i.get("ip") or i.get("hostname")) for i in ingress] + list(spec.get("externalIPs") or [])
    if spec.get("type") == "ExternalName":
        external.append(str(spec.get("externalName")))
    return ServiceView(
        name=meta["name"],
        namespace=meta.get("namespace", ""),
        type=str(spec.get("type", "ClusterIP")),
        cluster_ip=spec.get("clusterIP"),
        external_ip=",".join(external) or None,
        ports=[_port(p) for p in spec.get("ports") or []],
        age=age(meta.get("creationTimestamp"), now),
    )


def crd_view(crd: dict[str, Any], now: datetime) -> CRDView:
    """One CRD's row."""
    meta, spec = crd["metadata"], crd.get("spec") or {}
    versions = spec.get("versions") or []
    stored = next((v for v in versions if v.get("storage")), versions[0] if versions else {})
    return CRDView(
        name=meta["name"],
        group=str(spec.get("group", "")),
        version=str(stored.get("name", "")),
        kind=str((spec.get("names") or {}).get("kind", "")),
        scope=str(spec.get("scope", "")),
        age=age(meta.get("creationTimestamp"), now),
    )

"""Kubernetes workloads the kubelet-node tests and the cluster bench run."""

from __future__ import annotations

from typing import Any


def deployment(name: str, image: str, replicas: int = 1) -> dict[str, Any]:
    """A Deployment of ``image`` that never pulls, and whose pods stop at once (sleep ignores SIGTERM as PID 1)."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": name, "image": image, "imagePullPolicy": "Never"}],
                },
            },
        },
    }

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


def service(name: str, port: int, target_port: int) -> dict[str, Any]:
    """A ClusterIP Service named ``name`` for the pods labelled app=<name>: ``port`` to their ``target_port``."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": port, "targetPort": target_port}]},
    }

"""The local development environment: a real Kubernetes control plane on loopback.

``vapor.devenv`` (the folder ``hack/devenv``) starts etcd and kube-apiserver
built from their Go modules by ``hack/kube-binaries.sh``, with generated
certificates and a kubeconfig, and installs the CRDs from ``crds/``. The test
suite, ``make dev`` and ``make cluster-up`` all use it. ``Nodes`` adds real
kubelet nodes (each ``Node`` with its containerd and network namespace;
kube-scheduler, kube-controller-manager and cluster DNS for all) to it.
"""

from .controlplane import ControlPlane, ControlPlaneError, binaries, repo_root
from .node import Node
from .nodes import Nodes

__all__ = ["ControlPlane", "ControlPlaneError", "Node", "Nodes", "binaries", "repo_root"]

"""The local development environment: a real Kubernetes control plane on loopback.

``vapor.devenv`` (the folder ``hack/devenv``) starts etcd and kube-apiserver
built from their Go modules by ``hack/kube-binaries.sh``, with generated
certificates and a kubeconfig, and installs the CRDs from ``crds/``. The test
suite, ``make dev`` and ``make cluster-up`` all use it. ``Node`` adds a real
kubelet node (containerd, kube-scheduler, kube-controller-manager) to it.
"""

from .controlplane import ControlPlane, ControlPlaneError, binaries, repo_root
from .node import Node

__all__ = ["ControlPlane", "ControlPlaneError", "Node", "binaries", "repo_root"]

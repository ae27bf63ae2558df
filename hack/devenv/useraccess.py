"""What REST users may do on Kubernetes in the dev stack and the tests.

The gateway acts on Kubernetes as the logged-in user (``vapor:<name>`` in the
group ``vapor:admins`` or ``vapor:viewers``), so those groups need RBAC. The
chart grants it in a cluster (``templates/user-rbac.yaml``, values
``gateway.userAccess``); the local control plane gets the same defaults here:
admins may write Vapor's kinds (VMs, their snapshots and restores, Migrations, Mounts, Images, a Host's spec) in
every namespace, both groups may list CRDs, and in each granted namespace admins may edit and
viewers read pods, deployments and services (admins also get Secrets, which a
VM's cloud-init may name). A cluster uses the built-in
ClusterRoles ``edit`` and ``view``; here they would be empty, because
kube-controller-manager, which fills those aggregated roles, does not run on
the local control plane, so ``vapor-devenv:users-edit`` and ``vapor-devenv:users-view``
spell out what the endpoints use. Every name here starts with ``vapor-devenv:``,
a prefix no Helm release of the chart makes, so the chart installs onto a
node's cluster (which gets these too) under any release name, ``vapor`` included.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

PREFIX = "vapor:"
ADMINS, VIEWERS = f"{PREFIX}admins", f"{PREFIX}viewers"
RBAC = "rbac.authorization.k8s.io"


def _group(name: str) -> dict[str, str]:
    return {"apiGroup": RBAC, "kind": "Group", "name": name}


OURS = "vapor-devenv:"
EDIT, VIEW, VAPOR_ADMIN = f"{OURS}users-edit", f"{OURS}users-view", f"{OURS}users-vapor-admin"
CRDS = f"{OURS}users-crds"
# What an admin's REST writes of Vapor's own kinds need, in every namespace (the chart's users-vapor-admin).
VAPOR_WRITES = [
    {"apiGroups": ["vapor.io"], "resources": ["virtualmachines"], "verbs": ["get", "create", "patch", "delete"]},
    {"apiGroups": ["vapor.io"], "resources": ["migrations"], "verbs": ["get", "create", "patch"]},
    {"apiGroups": ["vapor.io"], "resources": ["mounts"], "verbs": ["get", "create", "delete"]},
    {"apiGroups": ["vapor.io"], "resources": ["virtualmachinesnapshots"], "verbs": ["get", "create", "delete"]},
    {"apiGroups": ["vapor.io"], "resources": ["virtualmachinerestores"], "verbs": ["get", "create"]},
    {"apiGroups": ["vapor.io"], "resources": ["images"], "verbs": ["get", "create", "delete"]},
    {"apiGroups": ["vapor.io"], "resources": ["hosts"], "verbs": ["get", "patch"]},
]
READ = ["get", "list", "watch"]
WORKLOADS = [
    {"apiGroups": [""], "resources": ["pods", "services"]},
    {"apiGroups": ["apps"], "resources": ["deployments"]},
]


# Admins may read a Secret by name, as Kubernetes' own edit role lets them: a VM made through REST may take
# its cloud-init user-data from a Secret its creator may read (the gateway reads it as the user).
READ_SECRETS = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}


def _cluster_role(name: str, verbs: list[str], *extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{RBAC}/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": [*({**rule, "verbs": verbs} for rule in WORKLOADS), *extra],
    }


def user_access(namespaces: Iterable[str]) -> list[dict[str, Any]]:
    """The ClusterRoles, ClusterRoleBinding and RoleBindings that give REST users their default access."""
    objects: list[dict[str, Any]] = [
        _cluster_role(EDIT, [*READ, "create", "update", "patch", "delete"], READ_SECRETS),
        _cluster_role(VIEW, READ),
        {
            "apiVersion": f"{RBAC}/v1",
            "kind": "ClusterRole",
            "metadata": {"name": VAPOR_ADMIN},
            "rules": VAPOR_WRITES,
        },
        {
            "apiVersion": f"{RBAC}/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": VAPOR_ADMIN},
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": VAPOR_ADMIN},
            "subjects": [_group(ADMINS)],
        },
        {
            "apiVersion": f"{RBAC}/v1",
            "kind": "ClusterRole",
            "metadata": {"name": CRDS},
            "rules": [
                {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["list"]}
            ],
        },
        {
            "apiVersion": f"{RBAC}/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": CRDS},
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": CRDS},
            "subjects": [_group(ADMINS), _group(VIEWERS)],
        },
    ]
    for namespace in namespaces:
        for group, role in ((ADMINS, EDIT), (VIEWERS, VIEW)):
            objects.append(
                {
                    "apiVersion": f"{RBAC}/v1",
                    "kind": "RoleBinding",
                    "metadata": {"name": f"{OURS}{group.removeprefix(PREFIX)}", "namespace": namespace},
                    "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": role},
                    "subjects": [_group(group)],
                }
            )
    return objects

"""Names every component agrees on: labels, finalizers, annotations, condition types.

Kept in one place (as KubeVirt keeps them beside its API types) so that the
operator that sets a label and the agent that selects on it spell it the same.
"""

from ._meta import GROUP

# Set by the operator when it places a VirtualMachine; each agent watches only
# the objects carrying its own host's name, through a server-side selector.
HOST_LABEL = f"{GROUP}/host"
# Set by the agent on its Host: the machine's stable id, for look-ups by id.
HOST_ID_LABEL = f"{GROUP}/host-id"

# Held by the agent while a domain exists for a VirtualMachine, so that deleting
# the resource first undefines the domain and removes its disks.
VM_FINALIZER = f"{GROUP}/domain-cleanup"
# Held by the agent while a Mount is mounted, so deleting it first unmounts.
MOUNT_FINALIZER = f"{GROUP}/unmount"

# Who asked for a change through the REST gateway (the audit trail).
REQUESTED_BY_ANNOTATION = f"{GROUP}/requested-by"
# A restart request: the agent restarts the domain when this value differs
# from status.lastRestartRequest (which it sets once the restart is done).
RESTART_ANNOTATION = f"{GROUP}/restart-requested-at"
# How a VM whose runStrategy becomes Halted is stopped: "force" powers it off
# at once; absent (or "graceful") asks the guest to shut down first.
STOP_MODE_ANNOTATION = f"{GROUP}/stop-mode"

# Host heartbeats: a coordination.k8s.io Lease per Host, named like the Host,
# in this namespace (as the kubelet's are in kube-node-lease).
LEASE_NAMESPACE = "vapor-system"

# Field manager names, so `kubectl get -o yaml --show-managed-fields` tells who owns what.
FIELD_MANAGER_OPERATOR = "vapor-operator"
FIELD_MANAGER_AGENT = "vapor-agent"
FIELD_MANAGER_GATEWAY_PREFIX = "vapor-gateway"


class ConditionType:
    """Condition types used in the status of the Vapor kinds."""

    READY = "Ready"  # Host: Lease fresh (operator); VirtualMachine: domain as asked (agent)
    SCHEDULED = "Scheduled"  # VirtualMachine: the operator has placed it on a host
    NETWORK_ROLLED_BACK = "NetworkRolledBack"  # Host: a change cut the agent off and was undone
    DESTINATION_CAPACITY = "DestinationCapacity"  # Migration pre-flight checks
    CPU_COMPATIBLE = "CPUCompatible"
    STORAGE_COMPATIBLE = "StorageCompatible"

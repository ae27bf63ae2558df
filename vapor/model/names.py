"""Names every component agrees on: labels, finalizers, annotations, condition types.

Kept in one place (as KubeVirt keeps them beside its API types) so that the
operator that sets a label and the agent that selects on it spell it the same.
"""

import hashlib

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

# Held by the operator on every Image, so deleting one that VMs still use waits
# (condition InUse names them) and the agents can drop their cached copies first.
IMAGE_FINALIZER = f"{GROUP}/image-in-use"

# Migrations: the operator labels a Migration with the two hosts when it
# leaves the queue (phase PreparingTarget), so each agent watches only the
# Migrations it takes part in, through a server-side selector.
MIGRATION_SOURCE_LABEL = f"{GROUP}/source-host"
MIGRATION_TARGET_LABEL = f"{GROUP}/target-host"
# Held by the operator on a Migration that has started, so `kubectl delete`
# of a running one aborts it (the VM stays on the source) before it goes.
MIGRATION_FINALIZER = f"{GROUP}/migration-cleanup"
# signerName of the CertificateSigningRequests of the nodes' migration certificates (the operator signs them)
MIGRATION_SIGNER = f"{GROUP}/migration"
# On a Migration the operator made to drain a Host in maintenance: the Host's name.
DRAIN_LABEL = f"{GROUP}/drain"
# On a VirtualMachine while a Migration moves it: that Migration's name. Set
# by the operator at PreparingTarget, removed when the Migration ends; both
# agents leave a VM with this annotation to the migration code.
MIGRATING_ANNOTATION = f"{GROUP}/migration"

# The audience of the gateway's tokens for agents. The API server itself does
# not accept a token of this audience, so an agent (or whoever took over its
# node) cannot replay the gateway's token against the Kubernetes API.
AGENT_AUDIENCE = "vapor-agent"
# On every answer of an agent's node API: the node it serves. The gateway takes
# an answer only from the host it meant to ask (a Host whose status names
# another agent's address gets 502, not that agent's users or data).
AGENT_NODE_HEADER = "X-Vapor-Node"

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
# The agent's network reconciler: status.interfaces, apiInterface and its own conditions.
FIELD_MANAGER_AGENT_NETWORK = "vapor-agent-network"
FIELD_MANAGER_GATEWAY_PREFIX = "vapor-gateway"
# Each agent writes its own entry of an Image's status.hosts under a manager of its own
# (one shared name would make each agent's apply remove the others' entries).
FIELD_MANAGER_AGENT_IMAGES_PREFIX = "vapor-agent-images"


def agent_images_field_manager(node: str) -> str:
    """The field manager of ``node``'s agent for its entries in Images' status.hosts (at most 128 characters)."""
    name = f"{FIELD_MANAGER_AGENT_IMAGES_PREFIX}.{node}"
    if len(name) <= 128:
        return name
    digest = hashlib.sha256(node.encode()).hexdigest()[:16]
    return f"{name[:111]}.{digest}"


class ConditionType:
    """Condition types used in the status of the Vapor kinds."""

    READY = "Ready"  # Host: Lease fresh (operator); VirtualMachine: domain as asked (agent)
    SCHEDULED = "Scheduled"  # VirtualMachine: the operator has placed it on a host
    NETWORK_ROLLED_BACK = "NetworkRolledBack"  # Host: a change cut the agent off and was undone
    NETWORK_CONFIGURED = "NetworkConfigured"  # Host: spec.interfaces applied by the agent (False: why not)
    DESTINATION_CAPACITY = "DestinationCapacity"  # Migration pre-flight checks
    CPU_COMPATIBLE = "CPUCompatible"
    STORAGE_COMPATIBLE = "StorageCompatible"
    SNAPSHOTS_KEPT = "SnapshotsKept"  # Migration pre-flight, when the VM has snapshots: False, they would be lost
    # Migration, written by the agents (server-side apply, one owner per type):
    TARGET_READY = "TargetReady"  # target agent: networks and storage prepared (False: why not)
    COMPLETED = "Completed"  # source agent: libvirt's job ended; True = moved, False = failed or aborted
    # VirtualMachine, by the agent:
    IMAGE_READY = "ImageReady"  # VM (agent) and Migration pre-flight (operator): the disks' Images are on the host (False: fetching, with progress, or why not)
    AGENT_CONNECTED = "AgentConnected"  # the guest's QEMU guest agent answers
    RESTART_REQUIRED = "RestartRequired"  # a change (cloud-init) takes effect at the next boot
    CLONED = "Cloned"  # a clone's disks copied from its source (False: copying, with progress, or why not)
    # Image, by the operator:
    IN_USE = "InUse"  # VMs use the image (True names them; a deletion waits for them)

"""Bad objects are rejected at `kubectl apply` time, with a message that says what is wrong.

Each case starts from a valid example, breaks one thing, and checks what the
user sees on the terminal: the field path and the reason.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from .conftest import Kubectl, load_example

Obj = dict[str, Any]


def _set(path: str, value: Any) -> Callable[[Obj], None]:
    """Set a dotted path (list indexes as numbers) in a manifest."""

    def mutate(obj: Obj) -> None:
        *parents, last = path.split(".")
        node: Any = obj
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return mutate


def _drop(path: str) -> Callable[[Obj], None]:
    def mutate(obj: Obj) -> None:
        *parents, last = path.split(".")
        node: Any = obj
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        del node[last]

    return mutate


def _do(*steps: Callable[[Obj], None]) -> Callable[[Obj], None]:
    def mutate(obj: Obj) -> None:
        for step in steps:
            step(obj)

    return mutate


DISK = {"name": "root", "size": "1Gi"}

# (id, example file, change, what the user must read in the error)
CASES: list[tuple[str, str, Callable[[Obj], None], list[str]]] = [
    (
        "vm-memory-below-16Mi",
        "virtualmachine.yaml",
        _set("spec.memory", "8Mi"),
        ["spec.memory", "memory must be a quantity of at least 16Mi"],
    ),
    (
        "vm-memory-bytes-below-16Mi",
        "virtualmachine.yaml",
        _set("spec.memory", 1024),
        ["spec.memory", "memory must be a quantity of at least 16Mi"],
    ),
    ("vm-memory-not-a-quantity", "virtualmachine.yaml", _set("spec.memory", "lots"), ["spec.memory", "should match"]),
    ("vm-cpu-zero", "virtualmachine.yaml", _set("spec.cpu", 0), ["spec.cpu", "should be greater than or equal to 1"]),
    (
        "vm-run-strategy-unknown",
        "virtualmachine.yaml",
        _set("spec.runStrategy", "Sometimes"),
        ["spec.runStrategy", 'Unsupported value: "Sometimes"', '"Running", "Halted", "Paused"'],
    ),
    ("vm-memory-missing", "virtualmachine.yaml", _drop("spec.memory"), ["spec.memory", "Required value"]),
    (
        "vm-cpu-above-max-cpu",
        "virtualmachine.yaml",
        _do(_set("spec.cpu", 4), _set("spec.maxCpu", 2)),
        ["spec: Invalid value", "cpu must be at most maxCpu"],
    ),
    (
        "vm-memory-above-max-memory",
        "virtualmachine.yaml",
        _do(_set("spec.memory", "1Gi"), _set("spec.maxMemory", 536870912)),
        ["spec: Invalid value", "memory must be at most maxMemory"],
    ),
    (
        "vm-disk-size-and-path",
        "virtualmachine.yaml",
        _set("spec.disks.0.path", "/var/lib/vapor/root.qcow2"),
        ["spec.disks[0]", "a disk needs exactly one of size (a new image), path (an existing image) or image"],
    ),
    (
        "vm-disk-image-and-path",
        "virtualmachine.yaml",
        _set("spec.disks", [{"name": "root", "image": "debian-12", "path": "/var/lib/vapor/images/a.qcow2"}]),
        ["spec.disks[0]", "a disk needs exactly one of size"],
    ),
    (
        "vm-cdrom-with-size",
        "virtualmachine.yaml",
        _set("spec.disks", [{"name": "install", "size": "1Gi", "cdrom": True}]),
        ["spec.disks[0]", "a cdrom disk is an image or a path as it is: it takes no size"],
    ),
    (
        "vm-cloud-init-user-data-twice",
        "virtualmachine.yaml",
        _set("spec.cloudInit", {"userData": "#cloud-config\n", "userDataSecretRef": {"name": "s"}}),
        ["spec.cloudInit", "give userData or userDataSecretRef, not both"],
    ),
    (
        "vm-cloud-init-bad-ssh-key",
        "virtualmachine.yaml",
        _set("spec.cloudInit", {"sshAuthorizedKeys": ["not a key"]}),
        ["spec.cloudInit.sshAuthorizedKeys[0]", "should match"],
    ),
    (
        "vm-firmware-unknown",
        "virtualmachine.yaml",
        _set("spec.firmware", "coreboot"),
        ["spec.firmware", 'Unsupported value: "coreboot"'],
    ),
    (
        "vm-disk-neither-size-nor-path",
        "virtualmachine.yaml",
        _set("spec.disks", [{"name": "root"}]),
        ["spec.disks[0]", "a disk needs exactly one of size"],
    ),
    (
        "vm-disk-relative-path",
        "virtualmachine.yaml",
        _set("spec.disks", [{"name": "root", "path": "root.qcow2"}]),
        ["spec.disks[0].path", "should match '^/"],
    ),
    (
        "vm-disk-duplicate-names",
        "virtualmachine.yaml",
        _set("spec.disks", [DISK, DISK]),
        ["spec.disks[1]", "Duplicate value"],
    ),
    (
        "vm-bridge-without-source",
        "virtualmachine.yaml",
        _set("spec.networks", [{"name": "lan", "type": "bridge"}]),
        ["spec.networks[0]", "source is required for network and bridge cards"],
    ),
    (
        "vm-bad-mac",
        "virtualmachine.yaml",
        _set("spec.networks.0.mac", "52:54:00:zz:00:01"),
        ["spec.networks[0].mac", "should match"],
    ),
    (
        "image-http-without-checksum",
        "image.yaml",
        _set("spec.source", {"http": {"url": "https://images.example.com/d.qcow2"}}),
        ["spec", "an http image needs checksum"],
    ),
    (
        "image-two-sources",
        "image.yaml",
        _set("spec.source.upload", {}),
        ["spec.source", "an image source needs exactly one of http, hostPath or upload"],
    ),
    (
        "image-checksum-not-sha256",
        "image.yaml",
        _set("spec.checksum", "md5:abc"),
        ["spec.checksum", "should match"],
    ),
    (
        "image-format-unknown",
        "image.yaml",
        _set("spec.format", "vmdk"),
        ["spec.format", 'Unsupported value: "vmdk"'],
    ),
    ("vm-unknown-field", "virtualmachine.yaml", _set("spec.cpus", 2), ['unknown field "spec.cpus"']),
    (
        "migration-copy-storage-unknown",
        "migration.yaml",
        _set("spec.copyStorage", "some"),
        ["spec.copyStorage", 'Unsupported value: "some"', '"none", "all", "incremental"'],
    ),
    ("migration-vm-missing", "migration.yaml", _drop("spec.vmName"), ["spec.vmName", "Required value"]),
    (
        "migration-negative-bandwidth",
        "migration.yaml",
        _set("spec.bandwidthMiBPerSecond", -1),
        ["spec.bandwidthMiBPerSecond", "should be greater than or equal to 0"],
    ),
    (
        "mount-relative-mount-point",
        "mount.yaml",
        _set("spec.mountPoint", "mnt/data"),
        ["spec.mountPoint", "should match"],
    ),
    ("mount-root-mount-point", "mount.yaml", _set("spec.mountPoint", "/"), ["spec.mountPoint", "should match"]),
    (
        "mount-into-proc",
        "mount.yaml",
        _set("spec.mountPoint", "/proc/data"),
        ["spec.mountPoint", "mountPoint must not be a system directory"],
    ),
    ("mount-over-etc", "mount.yaml", _set("spec.mountPoint", "/etc"), ["mountPoint must not be a system directory"]),
    (
        "mount-dotdot-mount-point",
        "mount.yaml",
        _set("spec.mountPoint", "/mnt/../etc"),
        ["spec.mountPoint", "mountPoint must be a plain absolute path without . or .. parts"],
    ),
    (
        "mount-device-outside-dev",
        "mount.yaml",
        _set("spec.device", "/tmp/disk.img"),
        ["spec.device", "should match '^/dev/"],
    ),
    ("mount-device-dotdot", "mount.yaml", _set("spec.device", "/dev/../etc/shadow"), ["spec.device", "should match"]),
    (
        "mount-filesystem-unknown",
        "mount.yaml",
        _set("spec.filesystem", "ntfs"),
        ["spec.filesystem", 'Unsupported value: "ntfs"'],
    ),
    ("mount-options-with-space", "mount.yaml", _set("spec.options", "rw, noatime"), ["spec.options", "should match"]),
    ("mount-host-missing", "mount.yaml", _drop("spec.host"), ["spec.host", "Required value"]),
    (
        "host-interface-name-too-long",
        "host.yaml",
        _set("spec.interfaces.0.name", "averyveryverylongname0"),
        ["spec.interfaces[0].name", "should match"],
    ),
    (
        "host-address-without-prefix",
        "host.yaml",
        _set("spec.interfaces.0.addresses", ["192.0.2.10"]),
        ["spec.interfaces[0].addresses[0]", "should match"],
    ),
    (
        "host-mtu-too-small",
        "host.yaml",
        _set("spec.interfaces.0.mtu", 10),
        ["spec.interfaces[0].mtu", "should be greater than or equal to 68"],
    ),
    (
        "host-interface-state-unknown",
        "host.yaml",
        _set("spec.interfaces.0.state", "sideways"),
        ["spec.interfaces[0].state", 'Unsupported value: "sideways"', '"up", "down"'],
    ),
    (
        "host-two-gateways",
        "host.yaml",
        _set(
            "spec.interfaces", [{"name": "eth0", "gateway": "192.0.2.1"}, {"name": "eth1", "gateway": "198.51.100.1"}]
        ),
        ["spec.interfaces", "only one interface may carry the default gateway"],
    ),
]


def _prepare(example: str, namespace: str, unique: Callable[[str], str]) -> Obj:
    obj = copy.deepcopy(load_example(example))
    if obj["kind"] in ("Host", "Mount", "Image"):
        obj["metadata"]["name"] = unique(obj["metadata"]["name"])
    else:
        obj["metadata"]["namespace"] = namespace
    return obj


@pytest.mark.parametrize(("example", "mutate", "messages"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_manifest_is_rejected_at_apply(
    kubectl: Kubectl,
    namespace: str,
    unique: Callable[[str], str],
    example: str,
    mutate: Callable[[Obj], None],
    messages: list[str],
) -> None:
    obj = _prepare(example, namespace, unique)
    mutate(obj)
    result = kubectl.apply(obj, check=False)
    assert result.returncode != 0, f"accepted: {obj}"
    for message in messages:
        assert message in result.stderr, f"{message!r} not in: {result.stderr}"
    name = obj["metadata"]["name"]
    gone = kubectl("get", obj["kind"].lower(), name, "-n", namespace, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr, "nothing half-made is left behind"


def test_the_unchanged_examples_are_valid(kubectl: Kubectl, namespace: str, unique, cluster_objects) -> None:
    """Guards the cases above: each fails only because of its one change."""
    examples = ("virtualmachine.yaml", "migration.yaml", "mount.yaml", "host.yaml", "image.yaml", "vm-debian.yaml")
    for example in (*examples, "vm-clone.yaml"):
        obj = _prepare(example, namespace, unique)
        kubectl.apply(obj, "--dry-run=server")


# Rules that compare an update with what is stored (CEL transition rules).
def test_migration_target_cannot_change_once_created(kubectl: Kubectl, namespace: str) -> None:
    obj = _prepare("migration.yaml", namespace, str)
    kubectl.apply(obj)
    obj["spec"]["vmName"] = "other-vm"
    obj["spec"]["destinationHost"] = "node-9"
    result = kubectl.apply(obj, check=False)
    assert result.returncode != 0
    assert "vmName cannot be changed once the Migration exists" in result.stderr
    assert "destinationHost cannot be changed once the Migration exists" in result.stderr


def test_a_disk_can_grow_but_never_shrink(kubectl: Kubectl, namespace: str) -> None:
    obj = _prepare("virtualmachine.yaml", namespace, str)
    obj["spec"]["disks"] = [{"name": "root", "size": "1Gi"}]
    kubectl.apply(obj)
    obj["spec"]["disks"] = [{"name": "root", "size": "512Mi"}]
    result = kubectl.apply(obj, check=False)
    assert result.returncode != 0
    assert "spec.disks[0].size" in result.stderr and "a disk can grow, never shrink" in result.stderr
    obj["spec"]["disks"] = [{"name": "root", "size": 2 * 2**30}]
    kubectl.apply(obj)


def test_image_source_checksum_and_format_cannot_change(kubectl: Kubectl, namespace: str, unique) -> None:
    obj = _prepare("image.yaml", namespace, unique)
    kubectl.apply(obj)
    try:
        obj["spec"]["source"] = {"hostPath": {"path": "/var/lib/vapor/images/other.qcow2"}}
        obj["spec"]["format"] = "raw"
        result = kubectl.apply(obj, check=False)
        assert result.returncode != 0
        assert "spec.source: Invalid value" in result.stderr and "is immutable; make a new Image" in result.stderr
        assert "spec.format: Invalid value" in result.stderr
    finally:
        kubectl("delete", "image", obj["metadata"]["name"], "--wait=false", check=False)


def test_cancelled_migration_cannot_be_resumed(kubectl: Kubectl, namespace: str) -> None:
    obj = _prepare("migration.yaml", namespace, str)
    obj["spec"]["cancel"] = True
    kubectl.apply(obj)
    obj["spec"]["cancel"] = False
    result = kubectl.apply(obj, check=False)
    assert result.returncode != 0
    assert "a cancelled Migration cannot be resumed" in result.stderr


def test_mount_device_cannot_change_once_created(kubectl: Kubectl, namespace: str, unique, cluster_objects) -> None:
    obj = _prepare("mount.yaml", namespace, unique)
    kubectl.apply(obj)
    cluster_objects.append(f"mount/{obj['metadata']['name']}")
    obj["spec"]["device"] = "/dev/sdc1"
    result = kubectl.apply(obj, check=False)
    assert result.returncode != 0
    assert "host, device and mountPoint cannot be changed; create a new Mount instead" in result.stderr
    obj["spec"]["options"] = "ro"  # what may change still can
    obj["spec"]["device"] = "/dev/sdb1"
    kubectl.apply(obj)

"""The CRDs on a real kube-apiserver: installed, usable with kubectl, self-describing."""

from __future__ import annotations

import json

import pytest
import yaml

from vapor.model import KINDS

from .conftest import EXAMPLES, Kubectl, contains, load_example

CRD_NAMES = [k.crd_name() for k in KINDS]


@pytest.mark.parametrize("crd", CRD_NAMES)
def test_crd_is_established_with_names_accepted(kubectl: Kubectl, crd: str) -> None:
    obj = kubectl.get_json("crd", crd)
    conditions = {c["type"]: c["status"] for c in obj["status"]["conditions"]}
    assert conditions["Established"] == "True"
    assert conditions["NamesAccepted"] == "True"
    version = obj["spec"]["versions"][0]
    assert version["name"] == "v1alpha1"
    assert version["subresources"] == {"status": {}}


def test_examples_apply_with_kustomize_and_read_back(kubectl: Kubectl, namespace: str) -> None:
    applied = kubectl("apply", "-k", str(EXAMPLES), "-n", namespace)
    for line in (
        "host.vapor.io/node-1",
        "virtualmachine.vapor.io/web-1",
        "migration.vapor.io/web-1-to-node-2",
        "mount.vapor.io/node-1-data",
        "image.vapor.io/debian-12",
        "virtualmachine.vapor.io/debian-1",
        "virtualmachinesnapshot.vapor.io/web-1-before-upgrade",
        "virtualmachinerestore.vapor.io/web-1-back-to-before-upgrade",
        "virtualmachine.vapor.io/debian-1-copy",
    ):
        assert line in applied.stdout
    try:
        for filename, kind, ns in (
            ("host.yaml", "vhost", None),
            ("virtualmachine.yaml", "vvm", namespace),
            ("migration.yaml", "vmig", namespace),
            ("mount.yaml", "vmount", None),
            ("image.yaml", "vimg", None),
            ("vm-debian.yaml", "vvm", namespace),
            ("snapshot.yaml", "vsnap", namespace),
            ("restore.yaml", "vrestore", namespace),
            ("vm-clone.yaml", "vvm", namespace),
        ):
            example = load_example(filename)
            args = [kind, example["metadata"]["name"]] + (["-n", ns] if ns else [])
            stored = kubectl.get_json(*args)
            # Every field the user wrote comes back as written; the server only adds defaults.
            assert contains(stored["spec"], example["spec"]), (filename, stored["spec"])
            assert stored["metadata"].get("labels", {}) == example["metadata"].get("labels", {})
    finally:
        kubectl("delete", "-n", namespace, "-k", str(EXAMPLES), "--wait=false", check=False)


def test_defaults_are_filled_in_by_the_api_server(kubectl: Kubectl, namespace: str) -> None:
    kubectl.apply(
        {
            "apiVersion": "vapor.io/v1alpha1",
            "kind": "VirtualMachine",
            "metadata": {"name": "tiny", "namespace": namespace},
            "spec": {"memory": "64Mi"},
        }
    )
    spec = kubectl.get_json("vvm", "tiny", "-n", namespace)["spec"]
    assert spec == {
        "memory": "64Mi",
        "cpu": 1,
        "runStrategy": "Halted",
        "gracefulShutdownSeconds": 60,
        "firmware": "bios",
    }
    kubectl.apply(
        {
            "apiVersion": "vapor.io/v1alpha1",
            "kind": "Migration",
            "metadata": {"name": "m", "namespace": namespace},
            "spec": {"vmName": "tiny"},
        }
    )
    spec = kubectl.get_json("vmig", "m", "-n", namespace)["spec"]
    assert spec["live"] is True and spec["persistent"] is True and spec["undefineSource"] is True
    assert spec["copyStorage"] == "none" and spec["completionTimeoutPerGiB"] == 150
    assert spec["progressTimeoutSeconds"] == 150 and spec["bandwidthMiBPerSecond"] == 0


def _table(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().splitlines()]


def test_kubectl_get_virtualmachine_shows_phase_host_cpu_memory(kubectl: Kubectl, namespace: str) -> None:
    kubectl.apply(
        {
            "apiVersion": "vapor.io/v1alpha1",
            "kind": "VirtualMachine",
            "metadata": {"name": "db-1", "namespace": namespace},
            "spec": {"memory": "512Mi", "cpu": 4, "runStrategy": "Running"},
        }
    )
    kubectl(
        "patch",
        "vvm",
        "db-1",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"phase": "Running", "host": "node-7", "addresses": ["192.168.122.50", "fe80::1"]}}),
    )
    header, row = _table(kubectl("get", "vvm", "-n", namespace).stdout)
    assert header == ["NAME", "PHASE", "HOST", "CPU", "MEMORY", "ADDRESS", "AGE"]
    assert row[:6] == ["db-1", "Running", "node-7", "4", "512Mi", "192.168.122.50"]
    wide_header = _table(kubectl("get", "virtualmachines", "-n", namespace, "-o", "wide").stdout)[0]
    assert wide_header == ["NAME", "PHASE", "HOST", "CPU", "MEMORY", "ADDRESS", "RUN", "DOMAIN", "AGE"]


def test_kubectl_get_image_shows_format_phase_hosts_size(kubectl: Kubectl, unique) -> None:
    name = unique("img")
    kubectl.apply(
        {
            "apiVersion": "vapor.io/v1alpha1",
            "kind": "Image",
            "metadata": {"name": name},
            "spec": {
                "source": {"http": {"url": "http://images.example.com/d.qcow2"}},
                "checksum": "a" * 64,
            },
        }
    )
    try:
        kubectl(
            "patch", "vimg", name, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": {"phase": "Ready", "readyHosts": 2, "size": 1048576}}),
        )  # fmt: skip
        header, row = _table(kubectl("get", "vimg", name).stdout)
        assert header == ["NAME", "FORMAT", "PHASE", "HOSTS", "SIZE", "AGE"]
        assert row[:5] == [name, "qcow2", "Ready", "2", "1048576"]
        wide = _table(kubectl("get", "images", name, "-o", "wide").stdout)
        assert wide[0][-2:] == ["URL", "AGE"] and wide[1][-2] == "http://images.example.com/d.qcow2"
    finally:
        kubectl("delete", "vimg", name, "--wait=false", check=False)


def test_kubectl_get_migration_shows_vm_hosts_phase_progress(kubectl: Kubectl, namespace: str) -> None:
    kubectl.apply(
        {
            "apiVersion": "vapor.io/v1alpha1",
            "kind": "Migration",
            "metadata": {"name": "move", "namespace": namespace},
            "spec": {"vmName": "db-1", "destinationHost": "node-2"},
        }
    )
    status = {"phase": "Running", "sourceHost": "node-1", "targetHost": "node-2", "progress": {"percent": 42}}
    kubectl(
        "patch",
        "vmig",
        "move",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )
    header, row = _table(kubectl("get", "vmig", "-n", namespace).stdout)
    assert header == ["NAME", "VM", "SOURCE", "DESTINATION", "PHASE", "PROGRESS", "AGE"]
    assert row[:6] == ["move", "db-1", "node-1", "node-2", "Running", "42"]


def test_kubectl_get_host_shows_ready_hostname_vms_cpu_memory(kubectl: Kubectl, unique, cluster_objects) -> None:
    name = unique("node")
    kubectl.apply({"apiVersion": "vapor.io/v1alpha1", "kind": "Host", "metadata": {"name": name}})
    cluster_objects.append(f"host/{name}")
    status = {
        "hostname": "rack1-node3.example.org",
        "vmCount": 3,
        "capacity": {"cpu": 32, "memory": "120Gi"},
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "AgentHeartbeat",
                "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ],
    }
    kubectl("patch", "host", name, "--subresource=status", "--type=merge", "-p", json.dumps({"status": status}))
    header, row = _table(kubectl("get", "vhost", name).stdout)
    assert header == ["NAME", "READY", "HOSTNAME", "VMS", "CPU", "MEMORY", "AGE"]
    assert row[:6] == [name, "True", "rack1-node3.example.org", "3", "32", "120Gi"]


def test_kubectl_get_mount_shows_host_device_mount_point_phase(kubectl: Kubectl, unique, cluster_objects) -> None:
    name = unique("data")
    kubectl.apply(
        {
            "apiVersion": "vapor.io/v1alpha1",
            "kind": "Mount",
            "metadata": {"name": name},
            "spec": {"host": "node-1", "device": "/dev/vdb", "mountPoint": "/srv/data", "filesystem": "xfs"},
        }
    )
    cluster_objects.append(f"mount/{name}")
    kubectl(
        "patch",
        "mount",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"phase": "Mounted", "mounted": True}}),
    )
    header, row = _table(kubectl("get", "vmount", name).stdout.replace("MOUNT POINT", "MOUNT_POINT"))
    assert header == ["NAME", "HOST", "DEVICE", "MOUNT_POINT", "PHASE", "AGE"]
    assert row[:5] == [name, "node-1", "/dev/vdb", "/srv/data", "Mounted"]


def test_status_is_a_subresource_spec_writes_do_not_touch_it(kubectl: Kubectl, namespace: str) -> None:
    vm = {
        "apiVersion": "vapor.io/v1alpha1",
        "kind": "VirtualMachine",
        "metadata": {"name": "s", "namespace": namespace},
        "spec": {"memory": "32Mi"},
        "status": {"phase": "Running"},
    }
    kubectl.apply(vm)
    stored = kubectl.get_json("vvm", "s", "-n", namespace)
    assert "status" not in stored, "status given with the spec must be ignored"
    assert stored["metadata"]["generation"] == 1
    kubectl(
        "patch",
        "vvm",
        "s",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"phase":"Stopped"}}',
    )
    stored = kubectl.get_json("vvm", "s", "-n", namespace)
    assert stored["status"]["phase"] == "Stopped"
    assert stored["metadata"]["generation"] == 1, "a status write does not bump the generation"


def test_short_names_and_the_vapor_category(kubectl: Kubectl, namespace: str) -> None:
    kubectl.apply(
        {
            "apiVersion": "vapor.io/v1alpha1",
            "kind": "VirtualMachine",
            "metadata": {"name": "c", "namespace": namespace},
            "spec": {"memory": "32Mi"},
        }
    )
    out = kubectl("get", "vapor", "-n", namespace, "-o", "name").stdout
    assert "virtualmachine.vapor.io/c" in out
    for short in ("vhost", "vvm", "vmig", "vmount"):
        assert kubectl("get", short, "-n", namespace, check=False).returncode == 0, short


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            "virtualmachine.spec",
            ["runStrategy", "Running: keep the domain running", "at least 16Mi", "Labels a Host must carry"],
        ),
        ("virtualmachine.spec.disks", ["qcow2", "bootOrder"]),
        ("migration.spec.copyStorage", ["ENUM: none all incremental", "storage both hosts share"]),
        ("migration.status.phase", ["Pending, Scheduling, PreparingTarget, Running, Succeeded, Failed"]),
        ("host.status.syncCursor", ["Unix time of the last inventory"]),
        ("host.spec.maintenance", ["migrates its running VMs"]),
        ("mount.spec.format", ["never reformatted"]),
    ],
)
def test_kubectl_explain_teaches_the_api(kubectl: Kubectl, path: str, expected: list[str]) -> None:
    out = " ".join(kubectl("explain", path).stdout.split())
    for text in expected:
        assert " ".join(text.split()) in out, f"{text!r} not in explain {path}:\n{out}"


def test_every_schema_field_has_a_description(kubectl: Kubectl) -> None:
    """What the server publishes (not only our files): kubectl explain has text everywhere."""
    missing: list[str] = []

    def walk(node: dict, path: str) -> None:
        for name, sub in node.get("properties", {}).items():
            if not sub.get("description"):
                missing.append(f"{path}.{name}")
            walk(sub, f"{path}.{name}")
        if "items" in node:
            walk(node["items"], path + "[]")

    for crd in CRD_NAMES:
        schema = kubectl.get_json("crd", crd)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        schema["properties"].pop("metadata")  # standard ObjectMeta: the API server allows no schema here
        walk(schema, crd)
    assert not missing, missing


def test_kustomization_lists_every_example() -> None:
    kustomization = yaml.safe_load((EXAMPLES / "kustomization.yaml").read_text())
    files = sorted(p.name for p in EXAMPLES.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(kustomization["resources"]) == files


def test_each_crd_reads_back_as_written(kubectl: Kubectl) -> None:
    """A CRD the API server stores differently from its manifest (an empty ``properties: {}`` it drops) makes
    every later server-side apply of it by another manager (a GitOps tool, helm) conflict."""
    for path in sorted((EXAMPLES.parent / "crds").glob("*.yaml")):
        result = kubectl("apply", "--server-side", "--dry-run=server", "--field-manager=gitops", "-f", str(path))
        assert "serverside-applied" in result.stdout, (path.name, result.stderr)

"""vaporctl snapshot against the stack: a stopped VM's qcow2 disk snapshotted by the agent; a refusal as one line."""

from __future__ import annotations

import json

from ..support.stack import Stack
from ..support.wait import wait_until
from .conftest import Vaporctl, rest
from .test_basics import new_vm


def test_snapshot_of_a_stopped_vm_and_a_vm_that_cannot(stack: Stack, admin_ctl: Vaporctl, vms_namespace: str) -> None:
    ns = vms_namespace
    with rest(stack) as api:
        body = {"name": "disky", "namespace": ns, "memory": "32Mi", "host_selector": {"e2e-run": stack.run},
                "disks": [{"name": "root", "size": "16Mi"}]}  # fmt: skip
        assert api.post("/vms", json=body).status_code == 201
    wait_until(
        lambda: json.loads(admin_ctl.ok("get", "vm", f"{ns}/disky", "-o", "json"))["status"] == "Stopped",
        60,
        what="VM defined",
    )
    out = admin_ctl.ok("snapshot", f"{ns}/disky", "--name", "first")
    assert out.startswith(f"Snapshot {ns}/first of vm disky: Ready"), out
    assert "disks root" in out

    taken = admin_ctl("snapshot", f"{ns}/disky", "--name", "first")
    assert taken.returncode == 1 and "already exists" in taken.stderr, taken.stderr

    new_vm(stack, ns, "bare")  # no disk at all: nothing to keep
    refused = admin_ctl("snapshot", f"{ns}/bare")
    assert refused.returncode == 1 and refused.stderr.startswith("error: snapshot bare-"), refused.stderr
    assert "the VM has no disk to snapshot" in refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1

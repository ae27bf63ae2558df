"""vaporctl image upload (streamed to the stack's agent, with progress) and ssh (the VM's address to ssh)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ..agent.imagetools import make_qcow2, sha256_of
from ..conftest import Kubectl
from ..support.agent import qemu_reachable_dir
from ..support.stack import Stack
from ..support.wait import wait_until
from .conftest import Vaporctl


@pytest.fixture
def image_name(unique: Callable[[str], str], cluster_objects: list[str]) -> str:
    name = unique("cli-up")
    cluster_objects.append(f"image/{name}")
    return name


@pytest.fixture
def files() -> Iterator[Path]:
    path = qemu_reachable_dir("vapor-cli-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_image_upload_streams_the_file_with_progress_and_the_host_holds_it(
    stack: Stack, gateway_account: None, admin_ctl: Vaporctl, image_name: str, files: Path
) -> None:
    source = make_qcow2(files, "disk.qcow2", data_mib=6, virtual="64M")
    out = admin_ctl.ok("image", "upload", str(source), "--name", image_name, "--host", stack.node)
    lines = out.splitlines()
    assert lines[0] == f"Image {image_name} created (format qcow2)."
    progress = [line for line in lines if line.startswith("uploaded ")]
    assert len(progress) >= 5 and progress[-1].endswith("(100%)"), out
    assert lines[-1].startswith(f"Image {image_name}: ") and f"to host {stack.node} and verified" in lines[-1]
    assert sha256_of(source) in lines[-1]

    def ready() -> bool:
        shown = json.loads(admin_ctl.ok("get", "image", image_name, "-o", "json"))
        return any(h["host"] == stack.node and h["phase"] == "Ready" for h in shown["hosts"])

    wait_until(ready, 30, what="the host's copy Ready")

    # a file that is not there is a usage error, before anything is sent
    missing = admin_ctl("image", "upload", str(files / "nope.qcow2"), "--name", image_name)
    assert missing.returncode == 2 and "is not a file" in missing.stderr


def test_ssh_runs_ssh_to_the_vms_address_with_the_arguments_after_the_dashes(
    stack: Stack, admin_ctl: Vaporctl, vms_namespace: str, kubectl: Kubectl, tmp_path: Path
) -> None:
    ns = vms_namespace
    # A VM no host can take (its selector matches none), whose addresses a STAND-IN writes as an agent would.
    kubectl.apply({"apiVersion": "vapor.io/v1alpha1", "kind": "VirtualMachine",
                   "metadata": {"name": "box", "namespace": ns},
                   "spec": {"memory": "32Mi", "hostSelector": {"nowhere": "x"}}})  # fmt: skip
    stand_in = json.dumps({"status": {"addresses": ["fe80::1", "192.0.2.7"]}})
    no_address = admin_ctl("ssh", f"{ns}/box")
    assert no_address.returncode == 1 and "has no address yet" in no_address.stderr, no_address.stderr
    kubectl("patch", "vvm", "box", "-n", ns, "--subresource=status", "--type=merge", "-p", stand_in)
    # A STAND-IN ssh on PATH that prints what it was given.
    fake = tmp_path / "bin" / "ssh"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "ssh $*"\n')
    fake.chmod(0o755)
    admin_ctl.env["PATH"] = f"{fake.parent}:/usr/bin:/bin"
    wait_until(lambda: "192.0.2.7" in admin_ctl.ok("get", "vm", f"{ns}/box", "-o", "json"), 20, what="cached")
    out = admin_ctl.ok("ssh", "box", "-n", ns, "-l", "debian", "--", "-p", "2222", "uname", "-a")
    assert out.strip() == "ssh -l debian 192.0.2.7 -p 2222 uname -a"

"""Tiny container images made without a registry or a Docker engine.

``busybox_rootfs()`` is a root filesystem tar of busybox-static with a few
applet links (about 2 MB). ``image_archive()`` wraps it in the archive format
``docker save`` writes (manifest.json, the image config, one layer), which
``ctr images import`` and ``docker load`` both read: a node's containerd gets
its pause image and test images this way.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "echo", "sleep", "cat", "ls", "true", "false", "env", "printf")
# The sandbox ("pause") image of a node: a process that sleeps until it is killed.
PAUSE_IMAGE = "vapor.local/pause:1"
PAUSE_COMMAND = ["/bin/sleep", "2147483647"]


def busybox_rootfs() -> bytes:
    """A root filesystem tar: /bin/busybox and links for a few applets."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(str(BUSYBOX), arcname="bin/busybox")
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
        for folder in ("tmp", "proc", "sys", "dev", "etc"):
            entry = tarfile.TarInfo(folder)
            entry.type = tarfile.DIRTYPE
            entry.mode = 0o1777 if folder == "tmp" else 0o755
            tar.addfile(entry)
    return buffer.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def image_archive(reference: str, command: list[str], layer: bytes | None = None) -> bytes:
    """A ``docker save`` archive of one image named ``reference`` (busybox by default) running ``command``."""
    layer = busybox_rootfs() if layer is None else layer
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": command, "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
        }
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [reference], "Layers": ["layer.tar"]}]).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        _add(tar, "layer.tar", layer)
        _add(tar, config_name, config)
        _add(tar, "manifest.json", manifest)
    return buffer.getvalue()

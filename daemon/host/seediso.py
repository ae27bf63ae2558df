"""cloud-init NoCloud seed ISOs: the documents a guest reads on first boot, as a CD.

cloud-init's NoCloud datasource looks for a filesystem labelled ``cidata``
holding ``meta-data`` and ``user-data`` (and, when given, ``network-config``)
at its root. ``write_seed_iso`` writes them as an ISO 9660 image with that
volume id; the names are lower case with a dash, which plain ISO 9660 cannot
spell, so the image carries Joliet and Rock Ridge records too (Linux reads
the Rock Ridge names). Which documents a VM gets is decided elsewhere; this
module only writes them.

The ISO is written next to its destination under a temporary name, flushed to
disk and renamed into place: a reader (QEMU, a later comparison) sees the old
seed or the new one whole, never a half-written file.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path

import pycdlib

VOLUME_ID = "cidata"

# Rock Ridge / Joliet name -> the 8.3 ISO 9660 name underneath it.
_NAMES = {"meta-data": "METADATA.;1", "user-data": "USERDATA.;1", "network-config": "NETWORKC.;1"}


def seed_iso_bytes(meta_data: str, user_data: str, network_config: str | None = None) -> bytes:
    """The seed ISO holding ``meta-data``, ``user-data`` and, when given, ``network-config`` (UTF-8)."""
    documents = {"meta-data": meta_data, "user-data": user_data}
    if network_config is not None:
        documents["network-config"] = network_config
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=1, joliet=3, rock_ridge="1.09", vol_ident=VOLUME_ID)
    try:
        for name, text in documents.items():
            data = text.encode()
            iso.add_fp(io.BytesIO(data), len(data), f"/{_NAMES[name]}", rr_name=name, joliet_path=f"/{name}")
        out = io.BytesIO()
        iso.write_fp(out)
        return out.getvalue()
    finally:
        iso.close()


def write_seed_iso(
    path: Path, meta_data: str, user_data: str, network_config: str | None = None, *, mode: int = 0o644
) -> None:
    """Write the seed ISO to ``path`` atomically (temporary file in the same folder, fsync, rename).

    The file gets ``mode``: by default readable by everyone (QEMU runs as its
    own user); 0o600 for a seed that may hold secrets, which libvirt gives to
    QEMU's user when it starts the domain (``dynamic_ownership``, its
    default). The folder is fsynced so that the rename survives a crash.
    """
    data = seed_iso_bytes(meta_data, user_data, network_config)
    folder = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fchmod(out.fileno(), mode)
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)

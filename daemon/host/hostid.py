"""The machine's stable id: a UUID kept in the state folder, never changed once written."""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

log = logging.getLogger("vapor.agent.hostid")

ID_FILE = "host-id"
# Namespace of the UUIDv5 that derives the first id from the machine id and node name.
VAPOR_HOST_NAMESPACE = uuid.UUID("6f1c1a2e-4d0b-5e7a-9a3c-0b5d1f7e8c21")


def machine_id(path: Path = Path("/etc/machine-id")) -> str:
    """The contents of /etc/machine-id, or empty when the machine has none."""
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def load_or_create(state_dir: Path, node_name: str) -> str:
    """Return the id stored in ``state_dir``; derive and store it the first time.

    The first id is a UUIDv5 of /etc/machine-id and the node name, so that a
    lost state folder on the same machine gives back the same id.
    """
    path = state_dir / ID_FILE
    try:
        return str(uuid.UUID(path.read_text().strip()))
    except FileNotFoundError:
        pass
    except ValueError:
        log.warning("host id file holds no UUID; writing a new one", extra={"path": str(path)})
    host_id = str(uuid.uuid5(VAPOR_HOST_NAMESPACE, f"{machine_id()}/{node_name}"))
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(host_id + "\n")
    os.replace(tmp, path)  # atomic: a crash leaves the old file or the new one, never half of one
    log.info("stored a new host id", extra={"host_id": host_id, "path": str(path)})
    return host_id

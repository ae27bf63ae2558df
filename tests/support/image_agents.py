"""A stand-in for the agents' side of an Image: each host's entry in status.hosts, nothing else.

Used where a test exercises the operator or the gateway without agents
(tests/operator, tests/gateway): it writes what a host's agent writes about
its copy of an image (phase, bytes, percent, sha256, virtualSize, reason)
through server-side apply under that agent's own field manager
(``agent_images_field_manager``), as the agents do, so that one host's
write leaves the others' entries alone. tests/e2e fetches real images.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from kubernetes import client

from vapor.model import GROUP, VERSION
from vapor.model.names import agent_images_field_manager

APPLY = "application/apply-patch+yaml"


class ImageAgentsStandIn:
    """Writes hosts' entries of Images' status.hosts, each as its host's agent would."""

    def __init__(self, api: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api)

    def report(self, image: str, host: str, phase: str, **fields: Any) -> None:
        """Apply ``host``'s entry for ``image`` (camelCase ``fields``: bytes, percent, sha256, virtualSize, reason)."""
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        entry = {"host": host, "phase": phase, "updatedAt": now, **fields}
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Image",
            "metadata": {"name": image},
            "status": {"hosts": [entry]},
        }
        self.custom.patch_cluster_custom_object_status(
            GROUP,
            VERSION,
            "images",
            image,
            body,
            field_manager=agent_images_field_manager(host),
            force=True,
            _content_type=APPLY,
        )

    def ready(self, image: str, host: str, *, size: int, sha256: str, virtual_size: int) -> None:
        """``host`` holds a verified copy."""
        self.report(
            image, host, "Ready", bytes=size, totalBytes=size, percent=100, sha256=sha256, virtualSize=virtual_size
        )

"""Kubernetes Events (events.k8s.io/v1) about Vapor objects: who did what, and why."""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import uuid
from typing import Any, Literal, cast

from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException

from ..model import Resource

log = logging.getLogger("vapor.kube.events")


class EventRecorder:
    """Records Events on objects so that ``kubectl describe`` tells their story.

    Failing to record an Event is logged, never raised: an audit line must not
    undo the change it describes.
    """

    def __init__(self, api: client.EventsV1Api) -> None:
        self.api = api
        self.instance = os.environ.get("POD_NAME") or socket.gethostname()

    async def record(
        self,
        obj: Resource,  # type: ignore[type-arg]
        *,
        reason: str,
        note: str,
        controller: str,
        action: str,
        type: Literal["Normal", "Warning"] = "Normal",
    ) -> None:
        """Record one Event about ``obj`` (reason: CamelCase word; note: a sentence for people)."""
        namespace = obj.metadata.namespace or "default"
        now = dt.datetime.now(dt.UTC)
        body: dict[str, Any] = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": f"{obj.name}.{uuid.uuid4().hex[:12]}", "namespace": namespace},
            "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "reportingController": f"vapor.io/{controller}",
            "reportingInstance": f"{controller}-{self.instance}"[:128],
            "action": action[:128],
            "reason": reason[:128],
            "note": note[:1024],
            "type": type,
            "regarding": {
                "apiVersion": obj.api_version,
                "kind": obj.kind,
                "name": obj.name,
                "namespace": obj.metadata.namespace,
                "uid": obj.metadata.uid,
                "resourceVersion": obj.metadata.resource_version,
            },
        }
        try:
            await self.api.create_namespaced_event(namespace, cast(Any, body))
        except ApiException as exc:
            log.warning("could not record event %s on %s/%s: %s", reason, obj.kind, obj.name, exc.reason)

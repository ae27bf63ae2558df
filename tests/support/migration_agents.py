"""A stand-in for the two agents' side of a migration: their status writes, nothing else.

Used where a test exercises the operator alone (tests/operator): it writes
what a target agent (condition TargetReady) and a source agent (startTime,
progress, endTime, downtimeMs, condition Completed) write, through
server-side apply with the agents' field manager, as the protocol says. No
libvirt runs; tests/migration moves real domains between real hosts.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

from kubernetes import client

from vapor.model import GROUP, VERSION
from vapor.model.names import FIELD_MANAGER_AGENT, ConditionType

APPLY = "application/apply-patch+yaml"


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class AgentConditionsStandIn:
    """Writes the agents' part of a Migration's status."""

    def __init__(self, api: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _apply(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Migration", "metadata": {"name": name}, "status": status}
        self.custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            "migrations",
            name,
            body,
            field_manager=FIELD_MANAGER_AGENT,
            force=True,
            _content_type=APPLY,
        )

    @staticmethod
    def _condition(ctype: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
        return {
            "type": ctype,
            "status": "True" if ok else "False",
            "reason": reason,
            "message": message,
            "lastTransitionTime": _now(),
        }

    def target_ready(
        self, namespace: str, name: str, ok: bool = True, reason: str = "Prepared", message: str = ""
    ) -> None:
        """The target agent's verdict on preparing (networks, storage)."""
        message = message or ("networks and storage ready" if ok else "could not prepare")
        self._apply(namespace, name, {"conditions": [self._condition(ConditionType.TARGET_READY, ok, reason, message)]})

    def completed(
        self, namespace: str, name: str, ok: bool = True, reason: str = "Migrated", message: str = ""
    ) -> None:
        """The source agent's end of the job: times, progress, downtime and Completed."""
        message = message or ("domain running on the target" if ok else "migration job ended")
        status: dict[str, Any] = {
            "startTime": _now(),
            "endTime": _now(),
            "progress": {"percent": 100 if ok else 40, "dataProcessedBytes": 1 << 20, "dataRemainingBytes": 0},
            "conditions": [self._condition(ConditionType.COMPLETED, ok, reason, message)],
        }
        if ok:
            status["downtimeMs"] = 12
        self._apply(namespace, name, status)

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        """The Migration as it is now."""
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "migrations", name)
        return obj

    # -- autopilot: both agents succeed at whatever the operator hands them ----------------------
    def autopilot(self, namespace: str, every: float = 0.3) -> AgentConditionsStandIn:
        """In a thread: report TargetReady for every Migration preparing, Completed for every one running."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._drive, args=(namespace, every), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the autopilot."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _drive(self, namespace: str, every: float) -> None:
        while not self._stop.wait(every):
            try:
                items = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "migrations")["items"]
            except client.ApiException:
                continue
            for item in items:
                status = item.get("status") or {}
                types = {c["type"] for c in status.get("conditions") or []}
                name = item["metadata"]["name"]
                try:
                    if status.get("phase") == "PreparingTarget" and ConditionType.TARGET_READY not in types:
                        self.target_ready(namespace, name)
                    elif status.get("phase") == "Running" and ConditionType.COMPLETED not in types:
                        self.completed(namespace, name)
                except client.ApiException:
                    continue

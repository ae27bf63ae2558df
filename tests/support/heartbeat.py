"""A stand-in for an agent's heartbeat: renews a host's Lease from the test process.

Used where a test needs a Ready host without running an agent (the operator
tests); the agent's own heartbeat is tested in tests/agent.
"""

from __future__ import annotations

import datetime as dt
import threading

from kubernetes import client

from vapor.model.names import LEASE_NAMESPACE


def _micro(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class HeartbeatStandIn:
    """Renews the Lease named after a host every ``every`` seconds until stopped."""

    def __init__(self, api: client.ApiClient, host: str, *, duration: int = 4, every: float = 1.0) -> None:
        self.leases = client.CoordinationV1Api(api)
        self.host = host
        self.duration = duration
        self.every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        """Renew once (creating the Lease the first time)."""
        now = _micro(dt.datetime.now(dt.UTC))
        body = {
            "metadata": {"name": self.host, "namespace": LEASE_NAMESPACE},
            "spec": {"holderIdentity": self.host, "leaseDurationSeconds": self.duration, "renewTime": now},
        }
        try:
            self.leases.patch_namespaced_lease(self.host, LEASE_NAMESPACE, body)
        except client.ApiException as exc:
            if exc.status != 404:
                raise
            body["spec"]["acquireTime"] = now
            self.leases.create_namespaced_lease(LEASE_NAMESPACE, body)

    def start(self) -> HeartbeatStandIn:
        """Beat now and keep beating in a thread."""
        self.beat()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop beating: the Lease expires ``duration`` seconds after the last renewal."""
        self._stop.set()
        if self._thread:
            self._thread.join()

    def delete(self) -> None:
        """Stop and remove the Lease."""
        self.stop()
        try:
            self.leases.delete_namespaced_lease(self.host, LEASE_NAMESPACE)
        except client.ApiException as exc:
            if exc.status != 404:
                raise

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.beat()

"""The chaos suite's wave of operations through the REST API, and the verdict on every answer.

One client, one call at a time (the machine is small): creates of tiny
diskless VMs, deletes, start and stop, live migrations to the other host.
Every answer is judged as the contract wants it: a success, or a failure in
the error envelope (``{"status": "error", "error": {"code", "message"}}``)
with a 4xx, or a 502/503/504 while a part is down; never a 500, never an
answer without the envelope, never a hang (the client's timeout is a
violation). A refused connection counts only while the gateway was down.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..support.pam import LinuxUser

CALL_TIMEOUT = 30.0  # seconds: an answer later than this is a hang
MAX_VMS = 4


@dataclass(frozen=True)
class Refusal:
    """One answer that was not a success: the operation, the answer (status and code), the request, the message."""

    op: str
    answer: str
    request: str
    message: str

    def __str__(self) -> str:
        return f"{self.op}: {self.request} -> {self.answer}: {self.message}"


def _request(method: str, path: str, kwargs: dict[str, Any]) -> str:
    """A request in one line: method, path with its query, the JSON body."""
    query = "&".join(f"{k}={v}" for k, v in (kwargs.get("params") or {}).items())
    body = kwargs.get("json")
    shown = {k: v for k, v in body.items() if k != "password"} if isinstance(body, dict) else body
    line = f"{method} {path}?{query}" if query else f"{method} {path}"
    return f"{line} {json.dumps(shown, separators=(',', ':'))}" if shown else line


@dataclass
class Wave:
    """Operations on the VMs of ``namespace`` through the gateway at ``url`` as an admin."""

    url: str
    admin: LinuxUser  # who logs in (again after a 401 or a dropped connection), a call judged like the others
    namespace: str
    hosts: list[str]
    gateway_down: Callable[[float], bool]  # whether the gateway was killed and not back at that moment
    seed: int | None = None
    ops: Counter[str] = field(default_factory=Counter)  # calls by operation
    outcomes: Counter[str] = field(default_factory=Counter)  # calls by what came back (ok, 409, 503, refused)
    violations: list[str] = field(default_factory=list)
    created: set[str] = field(default_factory=set)  # names of every VM the wave asked for
    history: list[str] = field(default_factory=list)  # every call on a VM and its answer, for a failure's report
    refusals: list[Refusal] = field(default_factory=list)  # every answer that was not a success

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._token: str | None = None
        self._last = ""
        self._said = ""  # the last failure's message (the error envelope's message and details, or the exception)
        self._client = httpx.Client(base_url=f"{self.url}/api/v1", timeout=CALL_TIMEOUT)

    def close(self) -> None:
        self._client.close()

    # -- one call, judged -----------------------------------------------------------------------------
    def call(self, op: str, method: str, path: str, vm: str = "", **kwargs: Any) -> dict[str, Any] | None:
        """One REST call (on the VM named ``vm``); its ``data`` on success, None otherwise (the verdict is recorded)."""
        self.ops[op] += 1
        before = sum(self.outcomes.values())
        self._said = ""
        try:
            return self._call(op, method, path, **kwargs)
        finally:
            if sum(self.outcomes.values()) > before:
                if vm:
                    self.history.append(f"{time.strftime('%H:%M:%S')} {op} {vm}: {self._last}")
                if self._last != "ok":
                    self.refusals.append(Refusal(op, self._last, _request(method, path, kwargs), self._said))

    def _call(self, op: str, method: str, path: str, **kwargs: Any) -> dict[str, Any] | None:
        if self._token is None and op != "login":
            credentials = {"username": self.admin.name, "password": self.admin.password}
            self._token = str((self.call("login", "POST", "/auth/login", json=credentials) or {}).get("token") or "")
            if not self._token:
                self._token = None
                return None
        began = time.monotonic()
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        try:
            r = self._client.request(method, path, headers=headers, **kwargs)
        except httpx.TimeoutException:
            self._violation(op, method, path, f"no answer in {CALL_TIMEOUT:.0f}s")
            return None
        except httpx.TransportError as exc:
            self._said = f"{type(exc).__name__}: {exc}"
            if self.gateway_down(began) or self.gateway_down(time.monotonic()):
                self._count("gateway down")
            else:
                self._violation(op, method, path, f"{type(exc).__name__}: {exc} while the gateway was up")
            self._token = None
            return None
        return self._judge(op, method, path, r)

    def _judge(self, op: str, method: str, path: str, r: httpx.Response) -> dict[str, Any] | None:
        try:
            body = r.json()
        except ValueError:
            body = None
        if r.status_code < 300 and isinstance(body, dict) and body.get("status") == "success":
            self._count("ok")
            return dict(body.get("data") or {})
        error = body.get("error") if isinstance(body, dict) and body.get("status") == "error" else None
        if not isinstance(error, dict) or not error.get("code") or not error.get("message"):
            self._violation(op, method, path, f"{r.status_code} without the error envelope: {r.text[:300]}")
        elif r.status_code == 500 or r.status_code < 400:
            self._violation(op, method, path, f"{r.status_code} {error['code']}: {error['message']}")
        else:
            self._said = " / ".join(str(error[k]) for k in ("message", "details") if error.get(k))
            self._count(f"{r.status_code} {error['code']}")
            if r.status_code == 401:
                self._token = None
        return None

    def refusals_by_op(self) -> Counter[str]:
        """The answers that were not a success, by operation and answer ("migrate 409 CONFLICT")."""
        return Counter(f"{r.op} {r.answer}" for r in self.refusals)

    def _count(self, what: str) -> None:
        self.outcomes[what] += 1
        self._last = what

    def _violation(self, op: str, method: str, path: str, what: str) -> None:
        self._count("violation")
        self._last = f"violation: {what}"
        self.violations.append(f"{op}: {method} {path}: {what}")

    # -- the operations ---------------------------------------------------------------------------------
    def _vms(self) -> list[dict[str, Any]]:
        data = self.call("list", "GET", "/vms", params={"namespace": self.namespace})
        return list((data or {}).get("vms") or [])

    def step(self) -> None:
        """One operation, picked at random among those the VMs allow now."""
        vms = [vm for vm in self._vms() if vm.get("namespace") == self.namespace]
        choices: list[Callable[[], None]] = []
        if len(vms) < MAX_VMS:
            choices += [self._create] * 2
        for vm in vms:
            choices += [lambda vm=vm: self._delete(vm)]
            choices += [lambda vm=vm: self._power(vm)] * 2
            if vm.get("status") == "Running" and vm.get("host"):
                choices += [lambda vm=vm: self._migrate(vm)] * 2
        if choices:
            self._random.choice(choices)()

    def _create(self) -> None:
        name = f"w-{uuid.uuid4().hex[:6]}"
        self.created.add(name)
        body = {"name": name, "namespace": self.namespace, "cpu": 1, "memory": "64Mi", "run_strategy": "Running"}
        self.call("create", "POST", "/vms", name, json=body)

    def _delete(self, vm: dict[str, Any]) -> None:
        self.call("delete", "DELETE", f"/vms/{vm['id']}", vm["name"], params={"namespace": self.namespace})

    def _power(self, vm: dict[str, Any]) -> None:
        action = "stop" if vm.get("status") == "Running" else "start"
        body = {"action": action, "force": True} if action == "stop" else {"action": action}
        params = {"namespace": self.namespace, "wait": 0}
        self.call(action, "POST", f"/vms/{vm['id']}/action", vm["name"], params=params, json=body)

    def _migrate(self, vm: dict[str, Any]) -> None:
        others = [h for h in self.hosts if h != vm.get("host")]
        body = {"destination_host_id": others[0], "live": True}
        params = {"namespace": self.namespace}
        self.call("migrate", "POST", f"/vms/{vm['id']}/migrate", vm["name"], params=params, json=body)

"""Start and stop a real etcd and kube-apiserver on loopback, and install Vapor's CRDs.

A ``ControlPlane`` owns one state folder: certificates, the etcd data, logs,
the kubeconfig and the process ids. Used as a context manager it lives as long
as the ``with`` block (tests, ``make dev``); ``up(detach=True)`` leaves the
processes running in their own session for ``make cluster-up``, and a later
``ControlPlane(same folder).down()`` stops them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from vapor.model.names import LEASE_NAMESPACE

from . import _certs
from .processes import alive, free_port, spawn, terminate
from .useraccess import user_access

log = logging.getLogger("vapor.devenv")

SERVICE_CIDR = "10.0.0.0/24"
# The ``kubernetes`` Service's address (the first of the range): in the serving certificate, for pods.
KUBERNETES_SERVICE = "10.0.0.1"


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or reached; the message says which log to read."""


def repo_root() -> Path:
    """The checkout this package runs from (``hack/devenv`` is two levels down)."""
    return Path(__file__).resolve().parent.parent.parent


def binaries(*mode: str) -> Path:
    """Folder holding kube-apiserver, etcd and kubectl, building them on first use.

    ``hack/kube-binaries.sh`` honours KUBE_APISERVER, ETCD and KUBECTL for
    binaries a user already has, and caches its builds under ~/.cache/vapor.
    ``binaries("node")``: the folder of kubelet, kube-scheduler and kube-controller-manager.
    """
    script = repo_root() / "hack" / "kube-binaries.sh"
    try:
        out = subprocess.run(["bash", str(script), *mode], check=True, stdout=subprocess.PIPE, text=True)
    except subprocess.CalledProcessError as exc:
        raise ControlPlaneError(f"{script} failed with exit code {exc.returncode}; its output is above") from exc
    return Path(out.stdout.strip().splitlines()[-1])


@dataclass
class _Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int


class ControlPlane:
    """A real etcd and kube-apiserver bound to 127.0.0.1, with Vapor's CRDs installed."""

    def __init__(
        self,
        state_dir: Path,
        *,
        crds: Path | None = None,
        bin_dir: Path | None = None,
        service_accounts: bool = False,
    ) -> None:
        """``service_accounts``: a cluster for a ``Node``, whose controller manager runs.

        Pods get their ServiceAccount's token, and the ``kubernetes`` Service's
        endpoints are left to the node (kubeproxy.publish_apiserver).
        """
        self.state_dir = Path(state_dir).resolve()
        self.crds = crds if crds is not None else repo_root() / "crds"
        self._bin_dir = bin_dir
        self.service_accounts = service_accounts
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._argv: dict[str, list[str]] = {}  # how each was started: a crash test starts it again (start_again)
        self._reused = False

    # -- paths ---------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (client certificate in system:masters)."""
        return self.state_dir / "kubeconfig"

    @property
    def bin_dir(self) -> Path:
        """Where kube-apiserver, etcd and kubectl are (built on first use)."""
        if self._bin_dir is None:
            self._bin_dir = binaries()
        return self._bin_dir

    @property
    def kubectl(self) -> Path:
        """The pinned kubectl that matches the API server."""
        return self.bin_dir / "kubectl"

    @property
    def _state_file(self) -> Path:
        return self.state_dir / "state.json"

    def _log(self, name: str) -> Path:
        return self.state_dir / "logs" / f"{name}.log"

    @property
    def url(self) -> str:
        """The API server's address."""
        return f"https://127.0.0.1:{self._read_state()['ports']['apiserver']}"

    # -- lifecycle -------------------------------------------------------------
    def up(self, *, detach: bool = False, timeout: float = 90.0) -> ControlPlane:
        """Start etcd and kube-apiserver, wait until ready, write the kubeconfig, install the CRDs.

        With ``detach`` the processes outlive this Python process (``make cluster-up``).
        Starting a state folder whose processes still run just checks and reuses them.
        """
        started = time.monotonic()
        if self.running():
            log.info("control plane already running at %s", self.url)
            self._reused = True
            self._wait_ready(timeout)
            self.install_crds()
            return self
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "logs").mkdir(exist_ok=True)
        pki = _certs.PKI(self.state_dir / "pki")
        if not pki.exists():
            _certs.generate(pki.dir)
        bins = self.bin_dir
        ports = _Ports(free_port(), free_port(), free_port())
        try:
            self._start_etcd(bins, ports, detach)
            self._start_apiserver(bins, ports, pki, detach)
            self._write_state(ports)
            self._write_kubeconfig(pki, ports)
            self._wait_ready(timeout)
            self.install_crds()
        except BaseException:
            self.down()
            raise
        log.info(
            "control plane ready at https://127.0.0.1:%d in %.1fs (kubeconfig %s)",
            ports.apiserver,
            time.monotonic() - started,
            self.kubeconfig,
        )
        return self

    def down(self, *, timeout: float = 20.0) -> None:
        """Stop the API server, then etcd; data and certificates stay for the next ``up``."""
        pids: dict[str, int] = {name: p.pid for name, p in self._procs.items()}
        if not pids and self._state_file.exists():
            pids = self._read_state().get("pids", {})
        for name in ("kube-apiserver", "etcd"):
            pid = pids.get(name)
            if pid is None or not alive(pid):
                continue
            log.info("stopping %s (pid %d)", name, pid)
            self._terminate(name, pid, timeout)
        self._procs.clear()
        if self._state_file.exists():
            self._state_file.unlink()

    def destroy(self) -> None:
        """Stop everything and remove the state folder (certificates, data, logs)."""
        self.down()
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def pids(self) -> dict[str, int]:
        """The process ids of etcd and kube-apiserver, by name."""
        return {name: p.pid for name, p in self._procs.items()} or dict(self._read_state().get("pids", {}))

    def running(self) -> bool:
        """Whether both processes recorded in the state folder are alive."""
        if not self._state_file.exists():
            return False
        pids = self._read_state().get("pids", {})
        return bool(pids) and all(alive(pid) for pid in pids.values())

    def __enter__(self) -> ControlPlane:
        return self.up()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._reused:  # a control plane someone else started keeps running
            self.down()

    def kill(self, name: str) -> None:
        """SIGKILL ``etcd`` or ``kube-apiserver`` as a crash would (chaos tests); ``start_again`` brings it back."""
        proc = self._procs[name]
        proc.kill()
        proc.wait(10)

    def start_again(self, name: str, timeout: float = 90.0, *, wait: bool = True) -> None:
        """Start a stopped ``etcd`` or ``kube-apiserver`` again (same flags, ports, data); wait for the API.

        ``wait=False``: return at once (a test that calls it while it starts).
        """
        self._spawn(name, self._argv[name], detach=False)
        self._write_state(_Ports(**self._read_state()["ports"]))
        if wait and (name == "kube-apiserver" or self._procs["kube-apiserver"].poll() is None):
            self._wait_ready(timeout)

    # -- clients ---------------------------------------------------------------
    def kubectl_run(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl against this control plane."""
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        result = subprocess.run(
            [str(self.kubectl), *args], input=input, capture_output=True, text=True, env=env, timeout=120
        )
        if check and result.returncode != 0:
            output = (result.stderr.strip() + "\n" + result.stdout.strip()).strip()
            raise ControlPlaneError(f"kubectl {' '.join(args)} failed (exit {result.returncode}): {output}")
        return result

    def install_crds(self, timeout: float = 60.0) -> None:
        """Apply every CRD in ``crds/`` server-side and wait until each is Established."""
        files = sorted(self.crds.glob("*.yaml"))
        if not files:
            raise ControlPlaneError(f"no CRDs found in {self.crds}")
        args = ["apply", "--server-side", "--force-conflicts", "--field-manager=vapor-devenv"]
        for f in files:
            args += ["-f", str(f)]
        self.kubectl_run(*args)
        # Where the agents' heartbeat Leases live (the Helm chart makes it in a cluster).
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": LEASE_NAMESPACE}}
        self.kubectl_run(
            "apply", "--server-side", "--field-manager=vapor-devenv", "-f", "-", input=json.dumps(namespace)
        )
        self.grant_user_access(["default"])
        names = sorted(yaml.safe_load(f.read_text())["metadata"]["name"] for f in files)
        deadline = time.monotonic() + timeout
        while True:
            listed = json.loads(self.kubectl_run("get", "crd", *names, "-o", "json").stdout)
            established = sorted(
                item["metadata"]["name"]
                for item in listed["items"]
                if any(
                    c["type"] == "Established" and c["status"] == "True"
                    for c in item.get("status", {}).get("conditions", [])
                )
            )
            if established == names:
                break
            if time.monotonic() > deadline:
                waiting = sorted(set(names) - set(established))
                raise ControlPlaneError(f"CRDs not Established after {timeout:.0f}s: {', '.join(waiting)}")
            time.sleep(0.2)
        # Established is not served yet: the API server answers 429 "storage is (re)initializing" until
        # each new kind's watch cache is filled. Wait for a list of each, so the first watch of a
        # component started right after this does not fail.
        for name in names:
            while self.kubectl_run("get", name, "--all-namespaces", "-o", "name", check=False).returncode != 0:
                if time.monotonic() > deadline:
                    raise ControlPlaneError(f"{name} not served after {timeout:.0f}s")
                time.sleep(0.2)
        log.info("CRDs established: %s", ", ".join(names))

    def grant_user_access(self, namespaces: list[str]) -> None:
        """Let REST users use the Kubernetes endpoints in ``namespaces`` (see ``useraccess``)."""
        manifest = {"apiVersion": "v1", "kind": "List", "items": user_access(namespaces)}
        self.kubectl_run(
            "apply", "--server-side", "--field-manager=vapor-devenv", "-f", "-", input=json.dumps(manifest)
        )

    # -- internals -------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str], detach: bool) -> None:
        proc = spawn(argv, self._log(name), detach=detach, cwd=self.state_dir)
        self._procs[name], self._argv[name] = proc, argv
        log.info("started %s (pid %d, log %s)", name, proc.pid, self._log(name))

    def _start_etcd(self, bins: Path, ports: _Ports, detach: bool) -> None:
        client = f"http://127.0.0.1:{ports.etcd_client}"
        peer = f"http://127.0.0.1:{ports.etcd_peer}"
        self._spawn(
            "etcd",
            [
                str(bins / "etcd"),
                "--name=vapor",
                f"--data-dir={self.state_dir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=vapor={peer}",
                "--listen-metrics-urls=",
                # A development store: losing the last writes in a power cut is fine, waiting on fsync is not.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            detach,
        )

    def _start_apiserver(self, bins: Path, ports: _Ports, pki: _certs.PKI, detach: bool) -> None:
        self._spawn(
            "kube-apiserver",
            [
                str(bins / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={ports.apiserver}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_cert}",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=RBAC",
                "--allow-privileged=true",
                # Without a controller manager to create default ServiceAccounts, pods could
                # not be admitted with this plugin on; a node's cluster runs one (node.py).
                "--enable-admission-plugins=ServiceAccount"
                if self.service_accounts
                else "--disable-admission-plugins=ServiceAccount",
                # A kubelet node (node.py) takes the admin certificate for logs and exec, at its address.
                f"--kubelet-client-certificate={pki.admin_cert}",
                f"--kubelet-client-key={pki.admin_key}",
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                # Its 127.0.0.1 is no address for pods: a node's cluster has the node publish the
                # ``kubernetes`` Service's endpoints (its forwarder to here; kubeproxy.py).
                *(["--endpoint-reconciler-type=none"] if self.service_accounts else []),
                f"--cert-dir={self.state_dir / 'pki'}",
                "--v=1",
            ],
            detach,
        )

    def _write_state(self, ports: _Ports) -> None:
        state = {"ports": ports.__dict__, "pids": {n: p.pid for n, p in self._procs.items()}}
        self._state_file.write_text(json.dumps(state, indent=2))

    def _read_state(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self._state_file.read_text()))
        except FileNotFoundError as exc:
            raise ControlPlaneError(f"no control plane recorded in {self.state_dir}") from exc

    def _write_kubeconfig(self, pki: _certs.PKI, ports: _Ports) -> None:
        import base64

        def b64(p: Path) -> str:
            return base64.b64encode(p.read_bytes()).decode()

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "vapor-dev",
                    "cluster": {
                        "server": f"https://127.0.0.1:{ports.apiserver}",
                        "certificate-authority-data": b64(pki.ca_cert),
                    },
                }
            ],
            "users": [
                {
                    "name": "vapor-admin",
                    "user": {"client-certificate-data": b64(pki.admin_cert), "client-key-data": b64(pki.admin_key)},
                }
            ],
            "contexts": [{"name": "vapor-dev", "context": {"cluster": "vapor-dev", "user": "vapor-admin"}}],
            "current-context": "vapor-dev",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config, sort_keys=False))
        self.kubeconfig.chmod(0o600)

    def _wait_ready(self, timeout: float) -> None:
        pki = _certs.PKI(self.state_dir / "pki")
        ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
        ctx.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    raise ControlPlaneError(
                        f"{name} exited with code {proc.returncode} while starting; see {self._log(name)}:\n"
                        + self._tail(name)
                    )
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", context=ctx, timeout=5) as resp:
                    if resp.status == 200:
                        return
            except OSError as exc:  # refused while starting, 500 until post-start hooks finish
                last = str(exc)
            time.sleep(0.25)
        raise ControlPlaneError(
            f"kube-apiserver not ready after {timeout:.0f}s ({last}); see {self._log('kube-apiserver')}"
        )

    def _tail(self, name: str, lines: int = 20) -> str:
        try:
            return "\n".join(self._log(name).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _terminate(self, name: str, pid: int, timeout: float) -> None:
        if not terminate(pid, timeout, self._procs.get(name)):
            log.warning("%s (pid %d) did not stop in %.0fs; killed it", name, pid, timeout)

"""A real containerd with its CRI plugin, private to a test session, and real CRI pods made through its socket.

Its own root, state, sockets and config under a short folder in /tmp; pods
use the node's network namespace, so no CNI plugin is needed. Its configuration
is the local node's (vapor.devenv.containerd); two of its settings
make the CRI's pod spec run on this machine: ``disable_apparmor`` (the kernel
has no AppArmor) and ``restrict_oom_score_adj`` (without it runc fails with
"can't get final child's PID from pipe"). Images come from the hermetic
dockerd (``docker save``) through ``ctr images import`` into the CRI's
``k8s.io`` namespace.

``stop()`` removes every pod it made, stops containerd by its PID, ends any
shim it left (found by its ``-address`` being this containerd's socket),
unmounts what is left under its folder and removes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from contextlib import closing
from pathlib import Path

import grpc

from vapor.agent.host.cri_proto import call
from vapor.devenv.containerd import CONFIG
from vapor.devenv.leftovers import kill_shims, unmount_all_under

from ..support.dockerd import Dockerd

PAUSE_IMAGE = "vapor-test/pause:1"


class Containerd:
    """containerd with the CRI on ``socket``."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="vctr-", dir="/tmp"))
        self.socket = str(self.root / "c.sock")
        self.log_path = self.root / "containerd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.sandboxes: list[str] = []

    def start(self, timeout: float = 30.0) -> Containerd:
        """Start containerd and wait until its CRI answers."""
        config = self.root / "config.toml"
        # The local node's settings (vapor.devenv.containerd); these pods use the node's network, so no CNI plugin.
        config.write_text(
            CONFIG.format(
                root=self.root, socket=self.socket, pause=f"docker.io/{PAUSE_IMAGE}", cni_bin=self.root / "cni" / "bin"
            )
        )
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                ["containerd", "--config", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"containerd exited with {self.proc.returncode}: {self.tail()}")
            if Path(self.socket).is_socket():
                try:
                    asyncio.run(call(self.socket, "Version", {"version": "v1"}, timeout=2))
                    return self
                except grpc.aio.AioRpcError:
                    pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"containerd's CRI did not answer within {timeout:.0f}s: {self.tail()}")

    def load_images(self, dockerd: Dockerd, *references: str) -> None:
        """Copy images from the hermetic dockerd into the CRI's image store."""
        archive = self.root / "image.tar"
        with closing(dockerd.client()) as client:
            for reference in references:
                with archive.open("wb") as out:
                    for chunk in client.api.get_image(reference):
                        out.write(chunk)
                subprocess.run(
                    ["ctr", "-a", self.socket, "-n", "k8s.io", "images", "import", str(archive)],
                    check=True,
                    capture_output=True,
                )
        archive.unlink()

    async def run_pod(self, container: str, image: str, command: list[str]) -> tuple[str, str]:
        """A pod (node network) with one started container, as a kubelet would make it; (sandbox id, container id)."""
        name = f"pod-{uuid.uuid4().hex[:8]}"
        sandbox = {
            "metadata": {"name": name, "uid": uuid.uuid4().hex, "namespace": "vapor-test"},
            "log_directory": str(self.root / "pods" / name),
            "labels": {"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": "vapor-test"},
            "linux": {"security_context": {"namespace_options": {"network": "NODE"}}},
        }
        made = await call(self.socket, "RunPodSandbox", {"config": sandbox}, timeout=60)
        self.sandboxes.append(made.pod_sandbox_id)
        config = {
            "metadata": {"name": container},
            "image": {"image": f"docker.io/{image}"},
            "command": command,
            "log_path": f"{container}.log",
            "labels": {**sandbox["labels"], "io.kubernetes.container.name": container},  # as the kubelet labels them
        }
        created = await call(
            self.socket,
            "CreateContainer",
            {"pod_sandbox_id": made.pod_sandbox_id, "config": config, "sandbox_config": sandbox},
            timeout=60,
        )
        await call(self.socket, "StartContainer", {"container_id": created.container_id}, timeout=60)
        return made.pod_sandbox_id, created.container_id

    async def remove_pods(self) -> None:
        """Stop and remove every pod this fixture made."""
        for sandbox in self.sandboxes:
            for method in ("StopPodSandbox", "RemovePodSandbox"):
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await call(self.socket, method, {"pod_sandbox_id": sandbox}, timeout=60)
        self.sandboxes = []

    def stop(self) -> None:
        """Remove the pods, stop containerd and its shims, clean its folder."""
        if self.proc is not None and self.proc.poll() is None:
            if self.sandboxes:
                asyncio.run(self.remove_pods())
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        kill_shims(self.socket)
        unmount_all_under(self.root)
        shutil.rmtree(self.root, ignore_errors=True)

    def tail(self, lines: int = 30) -> str:
        """The end of containerd's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

"""The container runtime of a local node: Debian's containerd with its CRI, and the reference CNI plugins.

Everything is under the node's own folder (root, state, socket, CNI
configuration and address leases), never the machine's /run/containerd or
/var/lib/containerd. containerd runs in the node's network namespace, so the
CNI bridge, the pods' veths and any rule a plugin adds live and die with it.
Settings this machine needs: ``disable_apparmor`` (the kernel has no
AppArmor), ``restrict_oom_score_adj`` (the machine refuses a negative
``oom_score_adj``, which the kubelet asks for every pod sandbox; without it
runc fails with "can't get final child's PID from pipe: EOF"), runc with
cgroupfs (``SystemdCgroup = false``: PID 1 is not systemd), and pod network
namespaces mounted under containerd's state folder rather than /run/netns.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from .controlplane import ControlPlaneError
from .images import PAUSE_COMMAND, PAUSE_IMAGE, image_archive

CNI_BIN = Path("/usr/lib/cni")  # Debian's containernetworking-plugins
CNI_CACHE = Path("/var/lib/cni/results")  # where containerd's CNI library caches each pod's result
POD_SUBNET = "10.244.0.0/24"  # the first node's pods (nodenet.pod_subnet)

CONFIG = """\
version = 2
root = "{root}/root"
state = "{root}/state"
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  disable_apparmor = true
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
    SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{root}/cni"
"""


class Runtime:
    """containerd for one node, its files under ``root`` (a short folder: socket paths have a 108-byte limit)."""

    def __init__(self, root: Path, log_path: Path, pod_subnet: str = POD_SUBNET) -> None:
        self.root = root
        self.pod_subnet = pod_subnet
        self.socket = str(root / "c.sock")
        self.log_path = log_path

    def argv(self) -> list[str]:
        """The command that runs containerd, after writing its configuration."""
        if not (CNI_BIN / "bridge").exists():
            raise ControlPlaneError(f"no CNI plugins in {CNI_BIN}: apt-get install containernetworking-plugins")
        (self.root / "cni").mkdir(parents=True, exist_ok=True)
        network = {
            "cniVersion": "0.4.0",
            "name": "vapor",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "vapor0",
                    "isGateway": True,
                    "ipMasq": False,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": self.pod_subnet}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.root / "ipam"),
                    },
                }
            ],
        }
        (self.root / "cni" / "10-vapor.conflist").write_text(json.dumps(network, indent=2))
        config = self.root / "containerd.toml"
        config.write_text(CONFIG.format(root=self.root, socket=self.socket, pause=PAUSE_IMAGE, cni_bin=CNI_BIN))
        return ["containerd", "--config", str(config)]

    def ctr(self, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        """``ctr`` in the CRI's ``k8s.io`` namespace of this containerd."""
        return subprocess.run(
            ["ctr", "-a", self.socket, "-n", "k8s.io", *args], input=input, capture_output=True, timeout=120
        )

    def wait_ready(self, alive: Callable[[], bool], timeout: float = 30.0) -> None:
        """Wait until the CRI answers; ``alive()`` says whether the process still runs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not alive():
                raise ControlPlaneError(f"containerd exited while starting; {self.log_path}:\n{self.tail()}")
            if Path(self.socket).is_socket() and self.ctr("version").returncode == 0:
                return
            time.sleep(0.1)
        raise ControlPlaneError(
            f"containerd's CRI did not answer within {timeout:.0f}s; {self.log_path}:\n{self.tail()}"
        )

    def import_image(self, archive: bytes) -> None:
        """Put an image (a ``docker save`` archive) into the CRI's store, as if pulled."""
        done = self.ctr("images", "import", "-", input=archive)
        if done.returncode != 0:
            raise ControlPlaneError(f"ctr images import failed: {done.stderr.decode(errors='replace').strip()}")

    def import_pause(self) -> None:
        """The sandbox image every pod starts with (``sandbox_image``)."""
        self.import_image(image_archive(PAUSE_IMAGE, PAUSE_COMMAND))

    def remove_pods(self) -> None:
        """Kill every pod's processes so that their shims exit, and drop the CNI plugins' cached results of them.

        The rest of a pod (its network namespace mount, its veth in the node's
        namespace, its address lease) goes with the node's folder and namespace.
        """
        if not Path(self.socket).is_socket():
            return
        listed = self.ctr("containers", "ls", "-q")
        for container in listed.stdout.decode().split() if listed.returncode == 0 else []:
            self.ctr("tasks", "kill", "--all", "--signal", "SIGKILL", container)
            for _ in range(50):
                if self.ctr("tasks", "delete", container).returncode == 0 or not self._has_task(container):
                    break
                time.sleep(0.1)
            for cached in CNI_CACHE.glob(f"*{container}*"):
                cached.unlink(missing_ok=True)

    def _has_task(self, container: str) -> bool:
        listed = self.ctr("tasks", "ls", "-q")
        return container in listed.stdout.decode().split()

    def tail(self, lines: int = 30) -> str:
        """The end of containerd's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

"""Command line of the development environment: ``python -m vapor.devenv {up,down,env,dev,status}``.

``up`` / ``down`` run the control plane in the background for ``make cluster-up``
and ``make cluster-down`` (``up --nodes N`` adds N kubelet nodes, each with its
containerd in its own network namespace, and the scheduler, the controller
manager and cluster DNS: nodes.py; ``down`` stops them too);
``env`` prints the line to ``eval`` for KUBECONFIG;
``dev`` runs everything in the foreground until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

from .controlplane import ControlPlane, ControlPlaneError, repo_root
from .nodes import Nodes
from .stack import Stack

DEFAULT_STATE = repo_root() / ".vapor" / "cluster"
READY_POLL = 0.5  # seconds between looks at this machine's Host and the gateway while starting


def main(argv: list[str] | None = None) -> int:
    """Run one devenv command."""
    parser = argparse.ArgumentParser(prog="vapor-devenv", description="Vapor's local control plane")
    parser.add_argument("command", choices=["up", "down", "destroy", "env", "status", "dev"])
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("VAPOR_STATE_DIR", DEFAULT_STATE)),
        help="where certificates, data, logs and the kubeconfig live (default: .vapor/cluster)",
    )
    parser.add_argument("--bind", default="127.0.0.1:8080", help="gateway address in dev (default 127.0.0.1:8080)")
    parser.add_argument(
        "--node-name", default=socket.gethostname().split(".")[0], help="this machine's Host name in dev"
    )
    parser.add_argument(
        "--nodes",
        type=int,
        default=0,
        help="with up: add this many kubelet nodes, kube-scheduler and kube-controller-manager (started at once)",
    )
    parser.add_argument("--node", action="store_true", help="with up: one kubelet node (--nodes 1)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    count = args.nodes or (1 if args.node else 0)
    cp = ControlPlane(args.state_dir, service_accounts=count > 0)
    try:
        if args.command == "up":
            cp.up(detach=True)
            if count:
                Nodes(cp, count).up(detach=True)
            print(f"export KUBECONFIG={cp.kubeconfig}")
        elif args.command == "down":
            Nodes(cp).down()
            cp.down()
        elif args.command == "destroy":
            Nodes(cp).down()
            cp.destroy()
        elif args.command == "env":
            print(f"export KUBECONFIG={cp.kubeconfig}")
        elif args.command == "status":
            if not cp.running():
                print("control plane: not running")
                return 1
            print(f"control plane: running at {cp.url}\nkubeconfig: {cp.kubeconfig}")
        elif args.command == "dev":
            return _dev(cp, bind=args.bind, node_name=args.node_name)
    except ControlPlaneError as exc:
        logging.getLogger("vapor.devenv").error("%s", exc)
        return 1
    return 0


def _dev(cp: ControlPlane, *, bind: str, node_name: str) -> int:
    """Run the embedded default in the foreground; Ctrl-C stops all of it."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    log = logging.getLogger("vapor.devenv")
    with cp:
        env = {"KUBECONFIG": str(cp.kubeconfig), "PATH": f"{cp.bin_dir}:{os.environ.get('PATH', '')}"}
        with Stack(cp.state_dir, env, bind=bind, node_name=node_name) as stack:
            if not _wait_until_ready(cp, stack, node_name, bind, stop):
                return 0 if stop.is_set() and not stack.died() else 1
            log.info(
                "Vapor is up: gateway http://%s, node %s. In another shell: export KUBECONFIG=%s",
                bind,
                node_name,
                cp.kubeconfig,
            )
            log.info("Try: kubectl apply -k examples/ && kubectl get vapor   (Ctrl-C stops everything)")
            while not stop.wait(1.0):
                for name in stack.died():
                    log.error("%s exited; its log: %s", name, stack.components[name].log_path)
                    stop.set()
        log.info("stopped")
    return 0


def _host_ready(cp: ControlPlane, node_name: str) -> bool:
    """Whether the Host of this machine has the condition Ready=True (its agent registered and beats)."""
    found = cp.kubectl_run("get", "hosts.vapor.io", node_name, "-o", "json", check=False)
    if found.returncode != 0:
        return False
    conditions = json.loads(found.stdout).get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _gateway_ready(bind: str) -> bool:
    """Whether the gateway answers its ``/readyz`` with 200 (listening, and its caches have synced)."""
    try:
        with urllib.request.urlopen(f"http://{bind}/readyz", timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _wait_until_ready(cp: ControlPlane, stack: Stack, node_name: str, bind: str, stop: threading.Event) -> bool:
    """Wait until this machine's Host is Ready and the gateway serves; False if stopped or a component died first.

    Both matter to the first thing a user does: a VM made before the Host is Ready
    finds no host, and a request sent before the gateway listens is refused.
    """
    log = logging.getLogger("vapor.devenv")
    log.info("waiting for the Host %s to be Ready and the gateway at %s to serve", node_name, bind)
    waited = 0.0
    while not (_host_ready(cp, node_name) and _gateway_ready(bind)):
        for name in stack.died():
            log.error("%s exited before Vapor was up; its log: %s", name, stack.components[name].log_path)
            return False
        if stop.wait(READY_POLL):
            return False
        waited += READY_POLL
        if waited % 30 < READY_POLL:
            log.info("still waiting for the Host %s and the gateway (%.0f s)", node_name, waited)
    return True


if __name__ == "__main__":
    sys.exit(main())

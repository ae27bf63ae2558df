"""Run every benchmark: ``python -m bench [name ...]`` (``make bench``)."""

from __future__ import annotations

import argparse
import sys

from . import (
    agent_fleet,
    agent_idle,
    cluster,
    console,
    controlplane,
    fleet,
    fleet_drain,
    gateway,
    guest_boot,
    guest_vm,
    images,
    journal_logs,
    login,
    migration,
    snapshot,
    ui_load,
    vm_start,
    ws_metrics,
)

BENCHMARKS = {
    "agent_fleet": agent_fleet.main,
    "agent_idle": agent_idle.main,
    "cluster": cluster.main,
    "console": console.main,
    "controlplane": controlplane.main,
    "fleet": fleet.main,
    "fleet_drain": fleet_drain.main,
    "gateway": gateway.main,
    "guest_boot": guest_boot.main,
    "guest_vm": guest_vm.main,
    "images": images.main,
    "journal_logs": journal_logs.main,
    "login": login.main,
    "migration": migration.main,
    "snapshot": snapshot.main,
    "ui_load": ui_load.main,
    "vm_start": vm_start.main,
    "ws_metrics": ws_metrics.main,
}


def main() -> int:
    """Run the named benchmarks, or all of them."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    args = parser.parse_args()
    for name in args.names or BENCHMARKS:
        print(f"== {name}")
        BENCHMARKS[name]()
    return 0


if __name__ == "__main__":
    sys.exit(main())

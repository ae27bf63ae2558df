"""The local control plane: cached start time, and the cost of Vapor's schema validation.

Writes VirtualMachines (structural schema plus CEL rules) and, as the
baseline, ConfigMaps of the same size (no schema) through the same client,
and prints both side by side.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from kubernetes import client, config

from vapor.devenv import ControlPlane

from ._samples import typical_vm

N = 300


def _timed(n: int, create: Callable[[int], object]) -> list[float]:
    out = []
    for i in range(n):
        start = time.perf_counter()
        create(i)
        out.append(time.perf_counter() - start)
    return out


def _row(label: str, samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p50, p99 = statistics.median(ms), ms[int(len(ms) * 0.99) - 1]
    return f"  {label:<28} {len(ms) / (sum(ms) / 1000):8.0f} /s   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms"


def main() -> None:
    """Print start times and create throughput."""
    with tempfile.TemporaryDirectory() as tmp:
        cp = ControlPlane(Path(tmp))
        assert cp.bin_dir.is_dir()  # build or find the binaries before timing anything
        start = time.perf_counter()
        cp.up()
        first = time.perf_counter() - start
        try:
            api = client.ApiClient(config.new_client_from_config(str(cp.kubeconfig)).configuration)
            custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
            core.create_namespace({"metadata": {"name": "bench"}})

            def create_vm(i: int) -> object:
                body = typical_vm(f"vm-{i}", "bench")
                return custom.create_namespaced_custom_object("vapor.io", "v1alpha1", "bench", "virtualmachines", body)

            def create_cm(i: int) -> object:
                body = {"metadata": {"name": f"cm-{i}"}, "data": {"spec": str(typical_vm("x", "bench")["spec"])}}
                return core.create_namespaced_config_map("bench", body)

            _timed(20, lambda i: create_cm(10_000 + i))  # warm the connection pool
            _timed(20, lambda i: create_vm(10_000 + i))  # and the CEL programs
            cms = _timed(N, create_cm)
            vms = _timed(N, create_vm)
            start = time.perf_counter()
            listed = custom.list_namespaced_custom_object("vapor.io", "v1alpha1", "bench", "virtualmachines")
            list_ms = (time.perf_counter() - start) * 1000
        finally:
            cp.down()
        start = time.perf_counter()
        cp.up()
        cached = time.perf_counter() - start
        cp.down()
    print(f"  control plane start (fresh state, cached binaries)  {first:5.2f} s")
    print(f"  control plane start (existing state: certs, data)   {cached:5.2f} s")
    print(f"  create, {N} objects one after another:")
    print(_row("ConfigMap (baseline)", cms))
    print(_row("VirtualMachine (schema+CEL)", vms))
    print(f"  LIST of {len(listed['items'])} VirtualMachines: {list_ms:.1f} ms")

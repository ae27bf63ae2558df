"""ui_load's update latency: one VM's status patched in the cluster, to its row showing it, with 1,000 rows.

Timed in the page's own clock (``performance.now()``): the start just before
the patch is sent, the row's change by a MutationObserver on the table (not
by polling the page from here). The baseline, in the same page and run: a
plain WebSocket on /ws/vms that only notes when the change arrives (what the
gateway's stream costs, with no table to draw). And the console as it was
before the stream, with /ws/vms refused in the browser: the table polling GET
/api/v1/vms every 1.5 s.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from kubernetes import client, config
from playwright.sync_api import Page

CHANGES = 20  # phase changes over the stream
POLLED_CHANGES = 8  # and with the stream refused (polling), each up to 1.5 s

# Note when each VM's badge text changes, and when a plain /ws/vms socket hears of each VM's change.
OBSERVE = """(token) => {
  window.__shown = {};
  window.__heard = {};
  const table = document.querySelector('table.vms tbody');
  new MutationObserver((records) => {
    const now = performance.now();
    for (const r of records) {
      const row = (r.target.nodeType === 1 ? r.target : r.target.parentElement)?.closest('tr[data-vm]');
      const badge = row?.querySelector('.badge');
      if (badge) window.__shown[`${row.dataset.vm}=${badge.textContent}`] ??= now;
    }
  }).observe(table, { subtree: true, childList: true, characterData: true });
  if (!token) return;
  const ws = new WebSocket(`ws://${location.host}/ws/vms`);
  ws.onopen = () => ws.send(JSON.stringify({ type: 'auth', payload: { token } }));
  ws.onmessage = (e) => {
    const now = performance.now();
    const m = JSON.parse(e.data);
    if (m.type === 'auth') ws.send(JSON.stringify({ type: 'subscribe', payload: { namespace: 'bench' } }));
    if (m.type === 'vm') window.__heard[`bench/${m.vm.name}=${m.vm.status}`] ??= now;
  };
  return new Promise((resolve) => {
    ws.addEventListener('message', (e) => JSON.parse(e.data).type === 'sync' && resolve());
  });
}"""


def flip(kubeconfig: Path, name: str, phase: str) -> None:
    """Patch one VM's phase as its agent would (the synchronous client: Playwright's loop runs in this thread)."""
    api = client.CustomObjectsApi(config.new_client_from_config(str(kubeconfig)))
    body = {"status": {"phase": phase}}
    api.patch_namespaced_custom_object_status("vapor.io", "v1alpha1", "bench", "virtualmachines", name, body)


def changes(page: Page, kubeconfig: Path, names: list[str], phase: str) -> tuple[list[float], list[float]]:
    """Seconds from each patch to its row showing it, and to the plain socket hearing it (empty without one)."""
    shown: list[float] = []
    heard: list[float] = []
    for name in names:
        key = f"bench/{name}={phase}"
        start = page.evaluate("performance.now()")
        flip(kubeconfig, name, phase)
        page.wait_for_function("(k) => window.__shown[k] !== undefined", arg=key, timeout=15_000)
        shown.append((page.evaluate("(k) => window.__shown[k]", key) - start) / 1000)
        arrived = page.evaluate("(k) => window.__heard[k]", key)
        if arrived is not None:
            heard.append((arrived - start) / 1000)
    return shown, heard


def p50_p95(values: list[float]) -> str:
    """'p50 x ms  p95 y ms' of seconds."""
    p95 = sorted(values)[min(len(values) - 1, round(len(values) * 0.95) - 1)]
    return f"p50 {statistics.median(values) * 1000:6.0f} ms   p95 {p95 * 1000:6.0f} ms"

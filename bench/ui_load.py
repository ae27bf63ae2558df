"""The web console's first load of the VM page with 1,000 VMs, in headless chromium.

A fresh control plane with 1,000 VirtualMachines (the gateway benchmark's),
the gateway serving the built console (``make ui``), a real PAM user, and
Debian's chromium driven by Playwright with an empty cache. Measured, as the
median of ROUNDS fresh browser contexts:

- the login page: navigation to the form ready for typing, and its bytes;
- the VM page: from pressing Enter on the login form to all 1,000 rows shown
  (time to interactive: the table is rendered and the page answers input),
  and its part after the PAM login answered (which depends on the machine's load),
  and every byte the page fetched from the start (assets and API, as sent:
  gzip where the gateway compresses), and the text of the WebSocket messages
  it received (the list now comes as /ws/vms's sync; the socket's
  permessage-deflate shrinks it on the wire, which the browser does not report:
  the deflated size is estimated here, each message deflated alone at level 6);
- update latency (bench/_ui_updates.py): with 1,000 rows shown, one VM's status
  patched in the cluster, to its row showing it, p50/p95 over 20 changes;
  next to it a plain /ws/vms socket in the same page, and the table polling
  as it did before the stream (the socket refused).

Baseline, side by side: the same GET /api/v1/vms by ``fetch`` in the same
page (what the table's data alone costs), so the rest is the console's own.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import httpx
from kubernetes import config
from playwright.sync_api import Browser, Page, sync_playwright

from tests.support.gatewayproc import gateway_answers
from tests.support.pam import linux_accounts, pam_service
from tests.support.wait import wait_until
from vapor.devenv import ControlPlane
from vapor.devenv.processes import free_port

from . import _ui_updates as updates
from .gateway import N_VMS, SECRET_NAMESPACE, _create_vms

ROUNDS = 5
CHROMIUM = os.environ.get("VAPOR_CHROMIUM", "/usr/bin/chromium")
BUILD = Path(__file__).resolve().parent.parent / "api" / "static" / "index.html"

# Every byte the page fetched (navigation and resources, as transferred) and the API's part of it.
TRANSFERRED = """() => {
  const all = [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')];
  const api = all.filter((e) => e.name.includes('/api/v1/') && !e.name.includes('/auth/'));
  const sum = (list) => list.reduce((n, e) => n + (e.transferSize || e.encodedBodySize || 0), 0);
  return { total: sum(all), api: sum(api) };
}"""
BASELINE = """async () => {
  const start = performance.now();
  const token = window.__benchToken;
  const r = await fetch('/api/v1/vms', { headers: { Authorization: `Bearer ${token}` } });
  const body = await r.json();
  return { ms: performance.now() - start, count: body.data.count };
}"""


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _one_load(page: Page, url: str, user: str, password: str) -> dict[str, float]:
    start = time.perf_counter()
    page.goto(url + "/#/vms")
    page.get_by_label("User name").wait_for()
    login_ready = time.perf_counter() - start
    login_bytes = page.evaluate(TRANSFERRED)["total"]
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(password)
    start = time.perf_counter()
    with page.expect_response(lambda r: r.url.endswith("/api/v1/auth/login")):
        page.get_by_label("Password").press("Enter")
    login_answer = time.perf_counter() - start
    page.locator("tr[data-vm]").nth(N_VMS - 1).wait_for()
    page.evaluate("() => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)))")  # a frame painted
    interactive = time.perf_counter() - start
    sizes = page.evaluate(TRANSFERRED)
    return {"login_ready": login_ready, "login_bytes": login_bytes, "tti": interactive, "login": login_answer, **sizes}


def _socket_bytes(page: Page) -> dict[str, Any]:
    """Count the text of the WebSocket messages the page receives, and whether its sockets deflate."""
    seen: dict[str, Any] = {"bytes": 0, "deflated": 0, "deflate": set()}
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")

    def frame(event: dict[str, Any]) -> None:
        text = event["response"]["payloadData"].encode()
        seen["bytes"] += len(text)
        deflate = zlib.compressobj(6, zlib.DEFLATED, -15)  # each message alone, as permessage-deflate may send it
        seen["deflated"] += len(deflate.compress(text) + deflate.flush(zlib.Z_SYNC_FLUSH)) - 4

    def handshake(event: dict[str, Any]) -> None:
        headers = {k.lower(): v for k, v in event["response"]["headers"].items()}
        seen["deflate"].add("permessage-deflate" in headers.get("sec-websocket-extensions", ""))

    cdp.on("Network.webSocketFrameReceived", frame)
    cdp.on("Network.webSocketHandshakeResponseReceived", handshake)
    return seen


def _logged_in(browser: Browser, url: str, user: str, password: str, *, refuse_stream: bool = False) -> Page:
    """A fresh context on the VM page with every row shown; /ws/vms refused in the browser when asked."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    if refuse_stream:
        context.route_web_socket("**/ws/vms", lambda ws: ws.close(code=1011, reason="bench: polling"))
    page = context.new_page()
    _one_load(page, url, user, password)
    return page


def _measure(url: str, kubeconfig: Path, user: str, password: str) -> None:
    loads: list[dict[str, float]] = []
    baselines: list[float] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            token = httpx.post(f"{url}/api/v1/auth/login", json={"username": user, "password": password})
            token_value = token.json()["data"]["token"]
            for _ in range(ROUNDS):
                context = browser.new_context(viewport={"width": 1280, "height": 800})
                page = context.new_page()
                sockets = _socket_bytes(page)
                loads.append(_one_load(page, url, user, password))
                loads[-1]["ws"] = sockets["bytes"]
                loads[-1]["ws_deflated"] = sockets["deflated"]
                deflate = sockets["deflate"]
                page.evaluate("(t) => { window.__benchToken = t; }", token_value)
                result: dict[str, Any] = page.evaluate(BASELINE)
                assert result["count"] == N_VMS, result
                baselines.append(result["ms"] / 1000)
                context.close()
            page = _logged_in(browser, url, user, password)
            page.evaluate(updates.OBSERVE, token_value)
            names = [f"vm-{100 + i:04d}" for i in range(updates.CHANGES)]
            shown, heard = updates.changes(page, kubeconfig, names, "Paused")
            page.context.close()
            page = _logged_in(browser, url, user, password, refuse_stream=True)
            page.evaluate(updates.OBSERVE, None)
            names = [f"vm-{200 + i:04d}" for i in range(updates.POLLED_CHANGES)]
            polled, _ = updates.changes(page, kubeconfig, names, "Paused")
            page.context.close()
        finally:
            browser.close()

    for load in loads:
        load["rest"] = load["tti"] - load["login"]

    def med(key: str) -> float:
        return _median([x[key] for x in loads])

    kib = 1024
    print(f"  first load of the VM page with {N_VMS} VMs, headless chromium, median of {ROUNDS} fresh contexts:")
    rows = [
        ("login page ready (navigation to the form)", med("login_ready"), f"{med('login_bytes') / kib:7.0f} KiB"),
        (
            "VM page interactive (Enter to 1,000 rows)",
            med("tti"),
            f"{med('total') / kib:7.0f} KiB fetched ({med('api') / kib:.0f} KiB of API answers)"
            f" + WebSocket messages: {med('ws') / kib:.0f} KiB of text, about"
            f" {med('ws_deflated') / kib:.0f} KiB deflated (permessage-deflate: {'yes' if all(deflate) else 'no'})",
        ),
        ("... of which the PAM login's answer", med("login"), ""),
        ("... the rest: the list and 1,000 rows drawn", med("rest"), ""),
        ("baseline: fetch GET /api/v1/vms in the page", _median(baselines), ""),
    ]
    for label, seconds, extra in rows:
        print(f"  {label:<48} {seconds * 1000:7.0f} ms   {extra}")
    print(f"  a VM's phase patched in the cluster, to its row (1,000 rows shown), {len(shown)} changes:")
    print(f"  {'the table, by /ws/vms':<48} {updates.p50_p95(shown)}")
    print(f"  {'baseline: a plain /ws/vms socket in the page':<48} {updates.p50_p95(heard)}")
    print(f"  {'before the stream: polling 1.5 s (socket refused)':<48} {updates.p50_p95(polled)}   ({len(polled)})")


def main() -> None:
    """Print the figures."""
    if not BUILD.exists():
        print("  skipped: the web console is not built (make ui)")
        return
    with tempfile.TemporaryDirectory() as tmp_dir, linux_accounts() as accounts, pam_service() as service:
        tmp = Path(tmp_dir)
        user = accounts.user("bench")
        cp = ControlPlane(tmp / "cp")
        cp.up()
        gateway: subprocess.Popen[bytes] | None = None
        try:
            start = time.perf_counter()
            _create_vms(config.new_client_from_config(str(cp.kubeconfig)))
            print(f"  created {N_VMS} VirtualMachines in {time.perf_counter() - start:.1f} s")
            port = free_port()
            gateway = subprocess.Popen(
                [
                    *(sys.executable, "-m", "vapor.gateway"),
                    "--bind",
                    f"127.0.0.1:{port}",
                    "--kubeconfig",
                    cp.kubeconfig,
                ],
                # two logins a round: no login limit; the general limit stays as deployed
                env={**os.environ, "VAPOR_SECRET_NAMESPACE": SECRET_NAMESPACE, "VAPOR_PAM_SERVICE": service}
                | {"VAPOR_LOGIN_RATE_LIMIT": "0"},
                stdout=(tmp / "gateway.log").open("wb"),
                stderr=subprocess.STDOUT,
            )
            url = f"http://127.0.0.1:{port}"
            wait_until(lambda: gateway_answers(url), 60, every=0.1, what="gateway up")
            _measure(url, cp.kubeconfig, user.name, user.password)
        finally:
            if gateway is not None:
                gateway.terminate()
                gateway.wait(timeout=15)
            cp.down()

"""Large bodies against the gateway process: refused at once, and never held in memory, before a caller is known.

A client streams the body over a plain socket, as an attacker would, while
the test watches the peak resident memory of the real gateway process.
"""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import httpx
import pytest

from .conftest import GatewayProcess, Users, bearer

MB = 1 << 20


def _peak_rss(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _stream(url: str, path: str, size: int, *, chunked: bool, token: str | None = None) -> str:
    """POST ``size`` bytes of JSON-ish body to ``path``, as fast as the server takes them; the status line."""
    parts = urlsplit(url)
    head = [f"POST {path} HTTP/1.1", f"Host: {parts.netloc}", "Content-Type: application/json"]
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}")
    if token:
        head.append(f"Authorization: Bearer {token}")
    block = b"x" * MB
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        try:
            for _ in range(size // MB):
                sock.sendall(b"%x\r\n%s\r\n" % (len(block), block) if chunked else block)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the server answered and stopped reading: what it said is below
        answer = sock.recv(65536).decode(errors="replace")
    return answer.split("\r\n", 1)[0]


@pytest.mark.parametrize("chunked", [False, True])
def test_an_unauthenticated_100_mb_login_body_is_refused_without_being_held(
    server: GatewayProcess, chunked: bool
) -> None:
    assert server.proc is not None
    before = _peak_rss(server.proc.pid)
    answers = [_stream(server.url, "/api/v1/auth/login", 100 * MB, chunked=chunked) for _ in range(3)]
    grown = _peak_rss(server.proc.pid) - before
    assert grown < 20 * MB, f"the gateway's peak memory grew by {grown // MB} MB"
    assert answers == ["HTTP/1.1 413 "] * 3
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_login_and_a_logged_in_users_bodies_still_work(server: GatewayProcess, users: Users) -> None:
    login = httpx.post(
        f"{server.url}/api/v1/auth/login", json={"username": users.admin.name, "password": users.admin.password}
    )
    assert login.status_code == 200, login.text
    token = login.json()["data"]["token"]
    # A logged-in user's body may be larger than a login's (here 1 MB of a manifest-sized body), and is
    # checked as usual; over the limit (10 MB) it is 413 in the envelope.
    big = httpx.post(f"{server.url}/api/v1/vms", headers=bearer(token), json={"name": "x" * MB}, timeout=30)
    assert big.status_code == 400 and big.json()["error"]["code"] == "INVALID_INPUT", big.text
    huge = httpx.post(
        f"{server.url}/api/v1/vms", headers=bearer(token), content=b'{"name":"' + b"x" * (11 * MB) + b'"}', timeout=30
    )
    assert huge.status_code == 413 and huge.json()["error"]["message"] == "the request body is too large"
    small_login = httpx.post(f"{server.url}/api/v1/auth/login", json={"username": "u", "password": "p" * (9 << 10)})
    assert small_login.status_code == 413, small_login.text


async def test_a_websocket_message_over_1_mb_closes_the_socket_before_authentication(server: GatewayProcess) -> None:
    assert server.proc is not None
    before = _peak_rss(server.proc.pid)
    async with aiohttp.ClientSession() as session, session.ws_connect(f"{server.url}/ws/metrics") as ws:
        await ws.send_str('{"type": "auth", "payload": {"token": "' + "x" * (8 * MB) + '"}}')
        message = await ws.receive(timeout=30)
    assert message.type == aiohttp.WSMsgType.CLOSE and message.data == 1009, message  # 1009: message too big
    assert _peak_rss(server.proc.pid) - before < 20 * MB

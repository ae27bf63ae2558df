"""GET /api/v1/logs end to end: gateway (login, strict query) -> real node API -> a real journal file.

The journal is written by systemd-journal-remote from journal export format,
so its entries carry ``_SYSTEMD_UNIT`` (live entries have none here, without
systemd as PID 1); the agent reads it through ``$VAPOR_JOURNAL_PATH``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from vapor.agent.nodeapi import journal as journal_api
from vapor.gateway import create_app
from vapor.kube import Kube

from ..conftest import Kubectl
from ..gateway.conftest import Users, bearer, login
from ..support.journald import write_journal
from ..support.nodeapi import NodeAPIHarness, running_node_api
from .test_auth import _get

pytestmark = pytest.mark.controlplane

START_US = 1_700_000_000_000_000  # 2023-11-14T22:13:20Z
UNITS = ("sshd", "cron", "nginx")
NAMES = ("emergency", "alert", "critical", "error", "warning", "notice", "info", "debug")
COUNT = 40


@dataclass(frozen=True)
class Logged:
    index: int
    unit: str
    priority: int

    @property
    def stamp_us(self) -> int:
        return START_US + self.index * 1_000_000

    @property
    def message(self) -> str:
        return f"entry {self.index} of {self.unit}"


FIXTURE = [Logged(i, UNITS[i % 3], i % 8) for i in range(COUNT)]


def newest_first(entries: list[Logged]) -> list[str]:
    return [e.message for e in sorted(entries, key=lambda e: e.stamp_us, reverse=True)]


@pytest.fixture
def journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A journal folder with FIXTURE's entries, written by the real systemd-journal-remote."""
    entries = [
        {
            "__REALTIME_TIMESTAMP": e.stamp_us,
            "__MONOTONIC_TIMESTAMP": e.index + 1,
            "_BOOT_ID": "00112233445566778899aabbccddeeff",
            "_SYSTEMD_UNIT": f"{e.unit}.service",
            "PRIORITY": e.priority,
            "MESSAGE": e.message,
            "_HOSTNAME": "fixture-host",
            "_PID": 1000 + e.index,
        }
        for e in FIXTURE
    ]
    folder = tmp_path / "journal"
    write_journal(folder / "fixture.journal", entries)
    monkeypatch.setenv("VAPOR_JOURNAL_PATH", str(folder))
    return folder


@pytest.fixture
async def node(
    kube: Kube,
    kubectl: Kubectl,
    namespace: str,
    journal: Path,
) -> AsyncIterator[NodeAPIHarness]:
    """The node API with only the journal routes (overrides the package's system-only ``node``)."""
    name = f"node-{uuid.uuid4().hex[:8]}"
    async with running_node_api(kube, kubectl, namespace, name, routes=[journal_api.routes]) as harness:
        yield harness


@pytest.fixture
async def token(gw_client: Client, users: Users) -> str:
    return str((await login(gw_client, users.admin))["token"])


async def logs(client: Client, token: str, **params: Any) -> dict[str, Any]:
    response = await client.get("/api/v1/logs", query_string=params, headers=bearer(token))
    body = await response.get_json()
    assert response.status_code == 200, body
    return dict(body["data"])


async def test_newest_first_in_pages_with_the_total(gw_client: Client, token: str) -> None:
    first = await logs(gw_client, token, page_size=15)
    assert (first["total_count"], first["page"], first["page_size"]) == (COUNT, 1, 15)
    assert [e["message"] for e in first["logs"]] == newest_first(FIXTURE)[:15]
    top = first["logs"][0]
    last = FIXTURE[-1]
    assert top == {
        "timestamp": dt.datetime.fromtimestamp(last.stamp_us / 1e6, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "priority": NAMES[last.priority],
        "unit": last.unit,
        "message": last.message,
        "hostname": "fixture-host",
        "pid": 1000 + last.index,
    }
    second = await logs(gw_client, token, page=2, page_size=15)
    assert second["total_count"] == COUNT
    assert [e["message"] for e in second["logs"]] == newest_first(FIXTURE)[15:30]
    third = await logs(gw_client, token, page=3, page_size=15)
    assert [e["message"] for e in third["logs"]] == newest_first(FIXTURE)[30:]
    beyond = await logs(gw_client, token, page=4, page_size=15)
    assert (beyond["logs"], beyond["total_count"]) == ([], COUNT)


async def test_default_and_largest_page_size(gw_client: Client, token: str) -> None:
    default = await logs(gw_client, token)
    assert (default["page"], default["page_size"], len(default["logs"])) == (1, 100, COUNT)
    largest = await logs(gw_client, token, page_size=1000)
    assert largest["page_size"] == 1000
    assert [e["message"] for e in largest["logs"]] == newest_first(FIXTURE)


async def test_service_filter(gw_client: Client, token: str) -> None:
    cron = [e for e in FIXTURE if e.unit == "cron"]
    data = await logs(gw_client, token, service="cron", page_size=5)
    assert data["total_count"] == len(cron)
    assert [e["message"] for e in data["logs"]] == newest_first(cron)[:5]
    assert {e["unit"] for e in data["logs"]} == {"cron"}
    full_name = await logs(gw_client, token, service="cron.service", page=2, page_size=5)
    assert [e["message"] for e in full_name["logs"]] == newest_first(cron)[5:10]
    none = await logs(gw_client, token, service="postfix")
    assert (none["logs"], none["total_count"]) == ([], 0)


@pytest.mark.parametrize("priority", ["err", "3", "error", "ERR"])
async def test_priority_filter_keeps_that_level_and_worse(gw_client: Client, token: str, priority: str) -> None:
    severe = [e for e in FIXTURE if e.priority <= 3]
    data = await logs(gw_client, token, priority=priority)
    assert data["total_count"] == len(severe)
    assert [e["message"] for e in data["logs"]] == newest_first(severe)
    assert {e["priority"] for e in data["logs"]} == {"emergency", "alert", "critical", "error"}


async def test_service_and_priority_together(gw_client: Client, token: str) -> None:
    wanted = [e for e in FIXTURE if e.unit == "sshd" and e.priority <= 4]
    data = await logs(gw_client, token, service="sshd", priority="warning")
    assert [e["message"] for e in data["logs"]] == newest_first(wanted)
    assert data["total_count"] == len(wanted)


async def test_since_and_until_are_inclusive_in_both_forms(gw_client: Client, token: str) -> None:
    window = [e for e in FIXTURE if 10 <= e.index <= 19]
    since, until = FIXTURE[10].stamp_us // 1_000_000, FIXTURE[19].stamp_us // 1_000_000
    unix = await logs(gw_client, token, since=str(since), until=str(until), page_size=4)
    assert unix["total_count"] == len(window)
    assert [e["message"] for e in unix["logs"]] == newest_first(window)[:4]
    iso = await logs(
        gw_client,
        token,
        since=dt.datetime.fromtimestamp(since, dt.UTC).isoformat(),
        until=dt.datetime.fromtimestamp(until, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        page=3,
        page_size=4,
    )
    assert iso["total_count"] == len(window)
    assert [e["message"] for e in iso["logs"]] == newest_first(window)[8:]
    only_since = await logs(gw_client, token, since=str(FIXTURE[-3].stamp_us // 1_000_000))
    assert [e["message"] for e in only_since["logs"]] == newest_first(FIXTURE[-3:])
    only_until = await logs(gw_client, token, until=str(FIXTURE[2].stamp_us // 1_000_000), service="sshd")
    assert [e["message"] for e in only_until["logs"]] == newest_first([e for e in FIXTURE[:3] if e.unit == "sshd"])


@pytest.mark.parametrize(
    "query",
    [
        "priority=8",
        "priority=-1",
        "priority=loud",
        "since=yesterday",
        "until=2025-13-01T00:00:00Z",
        "since=1700000100&until=1700000000",
        "page=0",
        "page=-2",
        "page=two",
        "page_size=0",
        "page_size=1001",
        "page_size=ten",
        "service=sshd%3Brm%20-rf",
        "service=" + "a" * 300,
        "lines=5",
    ],
)
async def test_bad_queries_are_invalid_input(gw_client: Client, token: str, node: NodeAPIHarness, query: str) -> None:
    response = await gw_client.get(f"/api/v1/logs?{query}", headers=bearer(token))
    body = await response.get_json()
    assert (response.status_code, body["status"], body["error"]["code"]) == (400, "error", "INVALID_INPUT"), body


async def test_a_login_is_required(gw_client: Client) -> None:
    response = await gw_client.get("/api/v1/logs")
    assert response.status_code == 401


async def _status_and_code(client: Client, token: str, query: str) -> tuple[int, str | None]:
    response = await client.get(f"/api/v1/logs?{query}", headers=bearer(token))
    body = await response.get_json()
    return response.status_code, body["error"]["code"] if response.status_code != 200 else None


async def test_viewers_read_no_logs_by_default(gw_client: Client, users: Users) -> None:
    """The journal holds sshd's "Invalid user <a password typed as a name>": not for every user."""
    viewer = str((await login(gw_client, users.viewer))["token"])
    for query in ("", "service=sshd", "service=cron&priority=err"):
        assert await _status_and_code(gw_client, viewer, query) == (403, "PERMISSION_DENIED"), query


async def test_viewers_read_the_units_the_gateway_allows(
    gateway_config: dict[str, Any], node: NodeAPIHarness, users: Users
) -> None:
    config = {**gateway_config, **node.gateway_config(), "VIEWER_LOG_UNITS": "cron, nginx.service"}
    async with create_app(config).test_app() as app:
        client = app.test_client()
        viewer = str((await login(client, users.viewer))["token"])
        cron = [e for e in FIXTURE if e.unit == "cron"]
        for service in ("cron", "cron.service"):
            data = await logs(client, viewer, service=service)
            assert [e["message"] for e in data["logs"]] == newest_first(cron)
        nginx = await logs(client, viewer, service="nginx")
        assert nginx["total_count"] == len([e for e in FIXTURE if e.unit == "nginx"])
        for query in ("", "service=sshd", "priority=err"):  # every unit, or one not listed
            assert await _status_and_code(client, viewer, query) == (403, "PERMISSION_DENIED"), query


@pytest.mark.parametrize(
    "query", ["page_size=1001", "priority=9", "since=noon", "page=0", "service=a%20b", "since=1700000100&until=1"]
)
async def test_the_agent_itself_refuses_bad_queries(node: NodeAPIHarness, query: str) -> None:
    """Called directly as the gateway, the node API checks the query again (no journal read for bad input)."""
    status, body = await _get(node, f"/logs?{query}", node.token())
    assert (status, body["error"]["code"]) == (400, "INVALID_INPUT"), body


async def test_the_agent_answers_the_contract_shape(node: NodeAPIHarness) -> None:
    status, body = await _get(node, "/logs?service=nginx&page_size=2&page=2", node.token())
    nginx = [e for e in FIXTURE if e.unit == "nginx"]
    assert status == 200, body
    assert body["data"]["total_count"] == len(nginx)
    assert [e["message"] for e in body["data"]["logs"]] == newest_first(nginx)[2:4]

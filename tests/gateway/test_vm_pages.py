"""GET /api/v1/vms in pages and with filters: what a UI or a script walking 10,000 VMs uses.

Phases and hosts are written by ``StandInAgent`` (a FAKE of the agent's status
writes: no agent runs in the gateway tests).
"""

from __future__ import annotations

import gzip
import json
from typing import Any, cast

import pytest
from quart.typing import TestAppProtocol as TestApp
from quart.typing import TestClientProtocol as Client

from vapor.gateway._schema import Success
from vapor.gateway._vmschema import VMList

from ..support.wait import eventually
from .conftest import StandInAgent, Users, bearer, login


async def _list(client: Client, token: str, query: str, status: int = 200) -> dict[str, Any]:
    response = await client.get(f"/api/v1/vms?{query}", headers=bearer(token))
    body = await response.get_json()
    assert response.status_code == status, body
    return dict(body)


async def _walk(client: Client, token: str, query: str, start: str | None = None) -> tuple[list[str], list[int]]:
    """Every VM name the pages of ``query`` hold (from after ``start``), in order, and each page's remaining."""
    names: list[str] = []
    remainings: list[int] = []
    token_query = f"&continue={start}" if start else ""
    while True:
        body = await _list(client, token, query + token_query)
        Success[VMList].model_validate(body)
        data = body["data"]
        names += [v["name"] for v in data["vms"]]
        remainings.append(data["remaining"])
        if data["continue"] is None:
            return names, remainings
        token_query = f"&continue={data['continue']}"


async def test_pages_walk_every_vm_once_in_order(
    client: Client, users: Users, namespace: str, kube: Any
) -> None:  # fmt: skip
    token = (await login(client, users.admin))["token"]
    for i in range(7):
        r = await client.post(
            "/api/v1/vms", json={"name": f"vm-{i}", "namespace": namespace, "memory": "32Mi"}, headers=bearer(token)
        )
        assert r.status_code == 201, await r.get_json()

    async def listed() -> bool:
        return (await _list(client, token, f"namespace={namespace}"))["data"]["count"] == 7

    await eventually(listed)
    names, remainings = await _walk(client, token, f"namespace={namespace}&limit=3")
    assert names == [f"vm-{i}" for i in range(7)]
    assert remainings == [4, 1, 0]

    # A VM made ahead of the cursor between two pages is seen; nothing is repeated or skipped.
    first = (await _list(client, token, f"namespace={namespace}&limit=3"))["data"]
    r = await client.post(
        "/api/v1/vms", json={"name": "vm-9", "namespace": namespace, "memory": "32Mi"}, headers=bearer(token)
    )
    assert r.status_code == 201

    async def eight() -> bool:
        return (await _list(client, token, f"namespace={namespace}"))["data"]["count"] == 8

    await eventually(eight)
    rest, _ = await _walk(client, token, f"namespace={namespace}&limit=3", first["continue"])
    assert [v["name"] for v in first["vms"]] + rest == [*(f"vm-{i}" for i in range(7)), "vm-9"]

    # The unpaged form answers as before: no continue, no remaining; gzip gives the same page.
    whole = (await _list(client, token, f"namespace={namespace}"))["data"]
    assert "continue" not in whole and whole["count"] == 8
    compressed = await client.get(
        f"/api/v1/vms?namespace={namespace}&limit=2", headers={**bearer(token), "Accept-Encoding": "gzip"}
    )
    assert compressed.headers["Content-Encoding"] == "gzip"
    assert json.loads(gzip.decompress(await compressed.get_data())) == await _list(
        client, token, f"namespace={namespace}&limit=2"
    )


async def test_filters_by_phase_and_host(client: Client, users: Users, namespace: str, kube: Any) -> None:
    token = (await login(client, users.admin))["token"]
    agent = StandInAgent(kube)
    for name in ("a", "b", "c"):
        r = await client.post(
            "/api/v1/vms", json={"name": name, "namespace": namespace, "memory": "32Mi"}, headers=bearer(token)
        )
        assert r.status_code == 201
    await agent.report("a", namespace, phase="Running", host="node-1", hostId="id-1")
    await agent.report("b", namespace, phase="Stopped", host="node-1", hostId="id-1")
    await agent.report("c", namespace, phase="Running", host="node-2", hostId="id-2")

    async def names(query: str) -> list[str]:
        return [v["name"] for v in (await _list(client, token, f"namespace={namespace}&{query}"))["data"]["vms"]]

    async def reported() -> bool:
        return await names("phase=Running") == ["a", "c"]

    await eventually(reported)
    assert await names("host=node-1") == ["a", "b"]
    assert await names("host=id-2") == ["c"]  # a Host by id too
    assert await names("host=node-1&phase=Running") == ["a"]
    assert await names("host=nowhere") == []
    page = (await _list(client, token, f"namespace={namespace}&phase=Running&limit=1"))["data"]
    assert [v["name"] for v in page["vms"]] == ["a"] and page["remaining"] == 1


async def test_bad_paging_is_invalid_input(client: Client, users: Users) -> None:
    token = (await login(client, users.viewer))["token"]
    for query in ("limit=0", "limit=5001", "limit=x", "phase=Sleeping", "continue=!!!", "continue=bm9zbGFzaA"):
        body = await _list(client, token, query, status=400)
        assert body["status"] == "error" and body["error"]["code"] == "INVALID_INPUT", (query, body)


async def test_a_filtered_walk_keeps_every_vm_that_stayed_while_others_come_go_and_move(
    client: Client, users: Users, namespace: str, kube: Any
) -> None:  # fmt: skip
    token = (await login(client, users.admin))["token"]
    agent = StandInAgent(kube)
    for i in range(9):
        r = await client.post(
            "/api/v1/vms", json={"name": f"vm-{i}", "namespace": namespace, "memory": "32Mi"}, headers=bearer(token)
        )
        assert r.status_code == 201, await r.get_json()
    for i in range(9):
        phase, host = ("Stopped", "node-1") if i == 1 else ("Running", "node-2" if i == 8 else "node-1")
        await agent.report(f"vm-{i}", namespace, phase=phase, host=host, hostId=f"id-{host}")
    query = f"namespace={namespace}&host=node-1&phase=Running&limit=2"

    async def names(q: str) -> list[str]:
        return [v["name"] for v in (await _list(client, token, q))["data"]["vms"]]

    async def matching(want: list[str]) -> bool:
        return await names(f"namespace={namespace}&host=node-1&phase=Running") == want

    await eventually(lambda: matching(["vm-0", "vm-2", "vm-3", "vm-4", "vm-5", "vm-6", "vm-7"]))
    first = (await _list(client, token, query))["data"]
    assert [v["name"] for v in first["vms"]] == ["vm-0", "vm-2"] and first["remaining"] == 5

    # Between two pages: one VM of the walk is deleted, one leaves the filter (Stopped), one joins it
    # ahead of the cursor (moved to node-1), one joins behind it (vm-1 Running: not this walk's to see).
    r = await client.delete(f"/api/v1/vms/vm-3?namespace={namespace}", headers=bearer(token))
    assert r.status_code == 200, await r.get_json()
    await agent.report("vm-4", namespace, phase="Stopped", host="node-1", hostId="id-node-1")
    await agent.report("vm-8", namespace, phase="Running", host="node-1", hostId="id-node-1")
    await agent.report("vm-1", namespace, phase="Running", host="node-1", hostId="id-node-1")
    await eventually(lambda: matching(["vm-0", "vm-1", "vm-2", "vm-5", "vm-6", "vm-7", "vm-8"]))

    rest, remainings = await _walk(client, token, query, first["continue"])
    assert rest == ["vm-5", "vm-6", "vm-7", "vm-8"]  # each VM that matched throughout once, in order
    assert remainings == [2, 0]
    # A host's id finds the same VMs as its name; another namespace's filter finds none of them.
    assert await names(f"namespace={namespace}&host=id-node-1&phase=Running") == await names(
        f"namespace={namespace}&host=node-1&phase=Running"
    )
    assert await names(f"namespace={namespace}-other&host=node-1&limit=5") == []


async def test_a_page_after_a_change_reads_only_its_own_vms(
    app: TestApp, client: Client, users: Users, namespace: str, kube: Any, monkeypatch: pytest.MonkeyPatch
) -> None:  # fmt: skip
    """A page follows the watch's changes instead of sorting the whole cache again (the cost of 10,000 VMs)."""
    token = (await login(client, users.admin))["token"]
    for i in range(4):
        r = await client.post(
            "/api/v1/vms", json={"name": f"vm-{i}", "namespace": namespace, "memory": "32Mi"}, headers=bearer(token)
        )
        assert r.status_code == 201
    first = (await _list(client, token, f"namespace={namespace}&limit=2"))["data"]
    cache = cast(Any, app).app.extensions["vapor"].vms  # the gateway the test harness runs
    reads: list[int] = []
    every = cache.items
    monkeypatch.setattr(cache, "items", lambda: reads.append(1) or every())
    await StandInAgent(kube).report("vm-3", namespace, phase="Running", host="node-1", hostId="id-1")

    async def seen() -> bool:
        return [
            v["name"] for v in (await _list(client, token, f"namespace={namespace}&phase=Running"))["data"]["vms"]
        ] == ["vm-3"]

    await eventually(seen)
    rest, _ = await _walk(client, token, f"namespace={namespace}&limit=2", first["continue"])
    assert rest == ["vm-2", "vm-3"]
    assert reads == []  # no page walked the whole cache


async def test_a_polled_page_is_made_once_until_a_vm_changes(
    app: TestApp, client: Client, users: Users, namespace: str, kube: Any, monkeypatch: pytest.MonkeyPatch
) -> None:  # fmt: skip
    token = (await login(client, users.admin))["token"]
    for name in ("a", "b"):
        r = await client.post(
            "/api/v1/vms", json={"name": name, "namespace": namespace, "memory": "32Mi"}, headers=bearer(token)
        )
        assert r.status_code == 201
    pages = cast(Any, app).app.extensions["vapor"].vm_pages
    made: list[Any] = []
    page = pages.page
    monkeypatch.setattr(pages, "page", lambda *args, **kwargs: made.append(args) or page(*args, **kwargs))
    query = f"namespace={namespace}&limit=1"
    first = await _list(client, token, query)
    gzipped = await client.get(f"/api/v1/vms?{query}", headers={**bearer(token), "Accept-Encoding": "gzip"})
    assert json.loads(gzip.decompress(await gzipped.get_data())) == first == await _list(client, token, query)
    assert len(made) == 1  # asked three times, plain and gzip: made once

    await StandInAgent(kube).report("a", namespace, phase="Running", host="node-1", hostId="id-1")

    async def changed() -> bool:
        return bool((await _list(client, token, query))["data"]["vms"][0]["phase"] == "Running")

    await eventually(changed)  # the page made again, with the change
    assert len(made) >= 2

"""A property-based run of schemathesis against the gateway's own OpenAPI document.

The real server (``python -m vapor.gateway`` on Hypercorn) against the real
control plane, called with an admin's token: every generated request must get
an answer that is not a 5xx and that fits the schema the document gives for
its status code, with the content type it documents.

Two runs, each with positive and negative generation (requests that fit the
document, and requests that break it on purpose):

- the gateway's own endpoints (auth, hosts, vms, snapshots, migrations, images, kubernetes);
- the endpoints that act on a host through its agent (system, logs,
  containers, docker, users, network, storage), against a real node-local
  API (the agent's aiohttp server with TLS and TokenReview, see
  tests/support/nodeapi.py) whose Host the gateway finds through
  ``status.agentEndpoint``. The host has a journal of its own (a journald
  instance of the test's, with entries it sent), no Docker engine and no CRI
  runtime; its Host status is written by the agent's own reporters: disks
  read from this machine, interfaces from a network namespace made for the
  test. ``?host=`` is drawn too: as generated, the host's name or its id.

EXAMPLES_PER_OPERATION (25) requests per operation and mode: about 1,500 in
the first run and 800 in the second, about 30 s each on 2 cores.

Generated requests must never change a host. So for the agent-backed tags
only the reads (GET) are generated, plus the Docker writes, which can run
nothing here: the agent has no Docker engine (checked before the run) and
answers them 503 NO_RUNTIME_AVAILABLE. The writes of users (create, reset a
password), storage (mount, unmount, format) and network (up, down, addresses)
are excluded, and the node API serves no storage routes at all; their
refusals are tested case by case in tests/nodeapi, tests/storage and
tests/network.

That 503 is the one 5xx accepted, and only precisely: for a containers or
Docker operation whose OpenAPI responses list 503 with NO_RUNTIME_AVAILABLE
among its codes, answered with that code and the agent's sentence for a host
without any runtime configured. Every other 5xx fails the run.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from vapor.agent.controllers.host import HostReporter
from vapor.agent.controllers.network import NetworkReconciler
from vapor.agent.host.journal import JOURNAL_PATH_ENV
from vapor.agent.nodeapi import containers as containers_api
from vapor.agent.nodeapi import journal as journal_api
from vapor.agent.nodeapi import system as system_api
from vapor.agent.nodeapi import users as users_api
from vapor.devenv import ControlPlane
from vapor.kube import Kube
from vapor.model import Host

from ..conftest import Kubectl
from ..support.journald import Journald
from ..support.nodeapi import NodeAPIHarness, running_node_api
from ..support.wait import eventually
from .conftest import GatewayProcess, Users

pytestmark = pytest.mark.controlplane

GATEWAY_OWN_TAGS = "^(auth|hosts|vms|snapshots|migrations|images|kubernetes)$"
AGENT_TAGS = "^(system|logs|containers|docker|users|network|storage)$"
WRITABLE_AGENT_TAGS = {"docker"}  # writes that can run nothing on a host without a Docker engine
RUNTIME_TAGS = {"containers", "docker"}
EXAMPLES_PER_OPERATION = 25
NODE_ROUTES = [  # no storage routes: a generated request can never reach the agent's format
    system_api.routes,
    users_api.routes,
    journal_api.routes,
    containers_api.routes,
]
NO_RUNTIME = "NO_RUNTIME_AVAILABLE"
ABSENT_RUNTIME_SENTENCES = (  # the agent's words for a host with no runtime configured (daemon/host/containers.py)
    "this host's agent has no Docker daemon configured",
    "no container runtime answers on this host",
    "no docker runtime answers on this host",
    "no containerd runtime answers on this host",
    "no cri-o runtime answers on this host",
)
KEEP = "as generated"
CHECKS: list[Callable[..., Any]] = [response_schema_conformance, content_type_conformance]


def run_operations(
    schema: Any,
    base_url: str,
    headers: dict[str, str],
    *,
    wanted: Callable[[Any], bool] = lambda operation: True,
    modes: tuple[GenerationMode, ...] = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE),
    server_error_check: Callable[..., Any] = not_a_server_error,
    hosts: list[str] | None = None,
) -> tuple[dict[str, Counter[int]], list[str]]:
    """Send EXAMPLES_PER_OPERATION generated requests per operation and mode; (statuses by operation, failures).

    ``hosts``: values drawn for ``?host=`` besides KEEP (the generated value, or none).
    """
    # schemathesis' pytest plugin does not run under pytest 9 (it reads a private node attribute that is
    # gone), so the operations are driven here with hypothesis directly: the same strategies and checks.
    failures: list[str] = []
    answers: dict[str, Counter[int]] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        if not wanted(operation):
            continue
        statuses = answers[operation.label] = Counter()

        def record(ctx: Any, response: Any, case: Any, statuses: Counter[int] = statuses) -> None:
            statuses[response.status_code] += 1

        choices = [KEEP, *(hosts or [])] if "host" in [p.name for p in operation.query] else [KEEP]
        for mode in modes:

            @given(case=operation.as_strategy(generation_mode=mode), host=st.sampled_from(choices))
            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,  # the same requests on every run, so a failure can be reproduced
                database=None,
            )
            def exercise(case: Any, host: str) -> None:
                if host != KEEP:
                    case.query = {**(case.query or {}), "host": host}
                case.call_and_validate(base_url=base_url, headers=headers, checks=[record, server_error_check, *CHECKS])

            try:
                exercise()
            except (Exception, BaseExceptionGroup) as exc:  # collect every operation's failure, then report them all
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    return answers, failures


def start_gateway(
    control_plane: ControlPlane, gateway_config: dict[str, Any], log: Path, **more: str
) -> GatewayProcess:
    """The gateway process with the test's PAM service, admin group and Secret namespace, and no rate limit."""
    env = {f"VAPOR_{k}": str(gateway_config[k]) for k in ("PAM_SERVICE", "ADMIN_GROUPS", "SECRET_NAMESPACE")}
    env["VAPOR_RATE_LIMIT"] = "0"  # hundreds of requests from one address; the limits have their own tests
    env["VAPOR_LOGIN_RATE_LIMIT"] = "0"
    env.update({f"VAPOR_{k}": v for k, v in more.items()})
    return GatewayProcess(control_plane.kubeconfig, env, log).start()


def admin_token(gateway: GatewayProcess, users: Users) -> str:
    response = httpx.post(
        f"{gateway.url}/api/v1/auth/login",
        json={"username": users.admin.name, "password": users.admin.password},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["token"])


# -- the gateway's own endpoints -------------------------------------------------------------------


@pytest.fixture
def fuzzed_gateway(
    control_plane: ControlPlane, gateway_config: dict[str, Any], tmp_path: Path
) -> Iterator[GatewayProcess]:
    process = start_gateway(control_plane, gateway_config, tmp_path / "gateway.log")
    yield process
    process.stop()


# What generated requests may create; each is removed after the run (see remove_what_the_run_made).
GENERATED_KINDS = (
    "virtualmachines.vapor.io",
    "migrations.vapor.io",
    "images.vapor.io",
    "mounts.vapor.io",
    "pods",
    "deployments",
    "services",
)


def remove_what_the_run_made(kubectl: Kubectl, user: str) -> list[str]:
    """Delete every object that ``user`` wrote through the gateway (its field manager), in every namespace.

    A generated VM stays Unschedulable only while no host is Ready: left in
    the cluster, the next test's operator would place it on that test's hosts
    and take their room.
    """
    manager = f"vapor-gateway:{user}"
    removed = []
    for kind in GENERATED_KINDS:
        for item in kubectl.get_json(kind, "--all-namespaces", "--show-managed-fields")["items"]:
            meta = item["metadata"]
            if not any(field.get("manager") == manager for field in meta.get("managedFields") or []):
                continue
            where = ["-n", meta["namespace"]] if meta.get("namespace") else []
            no_finalizers = '{"metadata":{"finalizers":null}}'
            kubectl("patch", kind, meta["name"], *where, "--type=merge", "-p", no_finalizers, check=False)
            kubectl("delete", kind, meta["name"], *where, "--ignore-not-found", "--wait=false", check=False)
            removed.append(f"{kind}/{meta['name']}")
    return removed


def test_no_server_errors_and_answers_fit_the_schema(
    fuzzed_gateway: GatewayProcess, users: Users, kubectl: Kubectl
) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzzed_gateway.url}/openapi.json").include(tag_regex=GATEWAY_OWN_TAGS)
    headers = {"Authorization": f"Bearer {admin_token(fuzzed_gateway, users)}"}
    try:
        answers, failures = run_operations(schema, fuzzed_gateway.url, headers)
    finally:
        removed = remove_what_the_run_made(kubectl, users.admin.name)
        print(f"removed {len(removed)} objects the generated requests made: {removed[:20]}")
    assert len(answers) >= 20, f"only {len(answers)} operations found in the OpenAPI document"
    assert not failures, "\n\n".join(failures)


# -- the endpoints that go through a host's agent ------------------------------------------------------


def _tags(operation: Any) -> set[str]:
    return set(operation.definition.raw.get("tags") or [])


def generated_against_a_host(operation: Any) -> bool:
    """Reads of every agent-backed tag, and the writes of WRITABLE_AGENT_TAGS only (see the module's docstring)."""
    return operation.method.upper() == "GET" or bool(_tags(operation) & WRITABLE_AGENT_TAGS)


def documented_codes(operation: Any, status: int) -> set[str]:
    """The error codes the OpenAPI document lists for ``status`` of ``operation`` (error.code's enum or const)."""
    document = operation.schema.raw_schema
    response = (operation.definition.raw.get("responses") or {}).get(str(status)) or {}
    schema = ((response.get("content") or {}).get("application/json") or {}).get("schema") or {}
    error = ((schema.get("properties") or {}).get("error") or {}).get("$ref", "")
    body = document["components"]["schemas"].get(error.rpartition("/")[2], {}) if error else {}
    code = (body.get("properties") or {}).get("code") or {}
    return set(code.get("enum") or ([code["const"]] if "const" in code else []))


def absent_runtime(case: Any, response: Any) -> bool:
    """Whether ``response`` is the documented 503 of a containers or Docker operation on a host without a runtime."""
    operation = case.operation
    if response.status_code != 503 or not _tags(operation) & RUNTIME_TAGS:
        return False
    if NO_RUNTIME not in documented_codes(operation, 503):
        return False
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return bool(error.get("code") == NO_RUNTIME and error.get("message") in ABSENT_RUNTIME_SENTENCES)


def not_a_server_error_but_an_absent_runtime(ctx: Any, response: Any, case: Any) -> bool | None:
    """not_a_server_error, except the documented 503 NO_RUNTIME_AVAILABLE of a host without a runtime."""
    if absent_runtime(case, response):
        return None
    return not_a_server_error(ctx, response, case)


JOURNAL_SERVICES = ("sshd", "cron")
JOURNAL_ENTRIES = 16


@pytest.fixture
def live_journal(monkeypatch: pytest.MonkeyPatch) -> Iterator[Journald]:
    """A journald of the test's own (tests/support/journald.py) that the node API reads, with two services' entries
    at every priority (journald writes them a moment later: the test waits for them through the gateway)."""
    with Journald() as journald:
        monkeypatch.setenv(JOURNAL_PATH_ENV, str(journald.directory))  # the node API runs in this process
        for i in range(JOURNAL_ENTRIES):
            journald.send(f"fuzz entry {i}", identifier=JOURNAL_SERVICES[i % 2], priority=i % 8)
        yield journald


@pytest.fixture
def network_namespace() -> Iterator[str]:
    """A network namespace with a veth pair (one end addressed) and a bridge; the machine's own stay untouched."""
    name = f"vfz-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for args in (
            ("link", "set", "lo", "up"),
            ("link", "add", "va", "type", "veth", "peer", "name", "vb"),
            ("link", "add", "br0", "type", "bridge"),
            ("addr", "add", "192.0.2.10/24", "dev", "va"),
            ("link", "set", "va", "up"),
            ("link", "set", "vb", "up"),
        ):
            subprocess.run(["ip", "-n", name, *args], check=True, capture_output=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


@dataclass(frozen=True)
class AgentHost:
    """The host the run acts on: its node API, name and id."""

    node: NodeAPIHarness
    name: str
    host_id: str


@pytest.fixture
async def agent_host(
    kube: Kube, kubectl: Kubectl, namespace: str, live_journal: Journald, network_namespace: str
) -> AsyncIterator[AgentHost]:
    """A real node API (NODE_ROUTES, no Docker, no CRI) and its Host's status as the agent's reporters write it."""
    name = f"fuzz-{uuid.uuid4().hex[:8]}"
    host_id = str(uuid.uuid4())
    async with running_node_api(
        kube, kubectl, namespace, name, routes=NODE_ROUTES, netns=network_namespace, docker_host="", cri_sockets=()
    ) as node:
        config = node.api.config
        assert await HostReporter(kube, config, host_id, None).sync_once(force=True)  # system, CPU, memory, disks
        current = await kube.resources(Host).get(name)
        network = NetworkReconciler(kube, config, lambda: current)
        try:
            assert await network.reconcile_once()  # the namespace's interfaces; an empty spec changes nothing
        finally:
            await network.stop()
        yield AgentHost(node=node, name=name, host_id=host_id)


@pytest.mark.timeout(600)
async def test_agent_backed_endpoints_give_no_server_errors_and_fit_the_schema(
    control_plane: ControlPlane,
    gateway_config: dict[str, Any],
    users: Users,
    agent_host: AgentHost,
    tmp_path: Path,
) -> None:
    node = agent_host.node
    gateway = start_gateway(
        control_plane, gateway_config, tmp_path / "gateway.log", **{k: str(v) for k, v in node.gateway_config().items()}
    )
    try:
        headers = {"Authorization": f"Bearer {admin_token(gateway, users)}"}
        async with httpx.AsyncClient(base_url=gateway.url, headers=headers, timeout=30) as client:
            # What makes the Docker writes safe to generate: this host's agent has no Docker engine.
            ps = await client.get("/api/v1/docker/ps")
            assert (ps.status_code, ps.json()["error"]["code"]) == (503, NO_RUNTIME), ps.text

            # The host answers through its agent: the run reaches a real node API, not just "no such host".
            async def journal_written() -> bool:
                answer = await client.get("/api/v1/logs", params={"host": agent_host.host_id, "service": "sshd"})
                assert answer.status_code == 200, answer.text
                return bool(answer.json()["data"]["total_count"] == JOURNAL_ENTRIES // 2)

            await eventually(journal_written, timeout=60, what="the journal's entries")
            interfaces = await client.get("/api/v1/network/interfaces")
            assert {"va", "vb", "br0"} <= {i["name"] for i in interfaces.json()["data"]["interfaces"]}
        schema = schemathesis.openapi.from_url(f"{gateway.url}/openapi.json").include(tag_regex=AGENT_TAGS)
        answers, failures = await asyncio.to_thread(  # the node API answers on this test's event loop meanwhile
            run_operations,
            schema,
            gateway.url,
            headers,
            wanted=generated_against_a_host,
            server_error_check=not_a_server_error_but_an_absent_runtime,
            hosts=[agent_host.name, agent_host.host_id],
        )
    finally:
        gateway.stop()
    assert not failures, "\n\n".join(failures)
    assert len(answers) == 16, answers  # 11 reads and the 5 Docker writes
    assert not [t for t in answers if t.split()[0] != "GET" and "/docker/" not in t], answers
    # The requests reached the host: every read but the runtimes' was answered by it, and the runtimes said why not.
    for label, statuses in answers.items():
        reached = 503 if "/containers" in label or "/docker/" in label else 200
        assert statuses[reached], (label, statuses)

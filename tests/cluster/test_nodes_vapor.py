"""Vapor on two kubelet nodes: an agent per node on its libvirtd, a live migration over TLS, a drain (marker cluster).

One two-node cluster and one ``helm install`` for the module. Each node runs
a libvirtd of its own, started on the node as a real host runs it
(nodelibvirtd.py), and has its own agent stateDir (``Node.private``), so the
agent DaemonSet's pod on each node keeps its own Host. Migrations use the
chart's default ``migration.transport: tls``: each agent gets its node's
certificate from the operator's migration CA (a CertificateSigningRequest),
then the node's libvirtd is pointed at it and restarted listening on TLS, as
daemon/README.md tells a node's admin. The operator replicas and the gateway
are installed while the second node is cordoned, so they all start on the
first: draining it must move every one of them. Last, ``helm upgrade`` to a
new tag rolls the agents one node at a time while neither Host's heartbeat
Lease lapses.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import libvirt
import pytest
from cryptography import x509

from ..image.build import Built
from ..support.wait import wait_until
from .conftest import Cluster
from .nodelibvirtd import NodeLibvirtd
from .release import NAMESPACE, REPOSITORY, Release, import_image, installed, pods_report
from .test_vapor import pods, ready
from .timeline import Timeline, Watch

pytestmark = [pytest.mark.cluster, pytest.mark.image, pytest.mark.timeout(1800)]
TLS_PORT, TCP_PORT = 16514, 16509  # libvirtd's
NO_TLS_YET = "libvirtd serves no TLS yet"  # the agent's word once it has its first certificate
AGENT_SCAN_SECONDS = 5  # how often an agent looks at its inventory (the chart leaves --scan-interval at its default)


@pytest.fixture(scope="module")
def libvirtds(two_nodes: Cluster) -> Iterator[list[NodeLibvirtd]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(NodeLibvirtd(node)) for node in two_nodes.nodes]


@pytest.fixture(scope="module")
def release(
    two_nodes: Cluster, libvirtds: list[NodeLibvirtd], docker_client: docker.DockerClient, image: Built
) -> Iterator[Release]:
    seconds = import_image(two_nodes, docker_client, image.tag)
    print(f"\nimage {image.tag} imported into both nodes' containerd in {seconds:.1f}s")

    def own_state(state: Path) -> None:
        for node in two_nodes.nodes:
            (node.private(state) / "images").mkdir()

    second = two_nodes.nodes[1].name
    two_nodes.kubectl("cordon", second)
    try:
        with installed(two_nodes, prepare=own_state) as release:
            two_nodes.kubectl("uncordon", second)
            print(f"helm install on two nodes to every pod Ready: {release.seconds_to_ready:.1f}s")
            serve_tls(release, libvirtds)
            yield release
    finally:
        two_nodes.kubectl("uncordon", second, check=False)


def serve_tls(release: Release, libvirtds: list[NodeLibvirtd]) -> None:
    """The node admin's step: once its agent has the certificate, a node's libvirtd serves TLS with it.

    The agent's log says when (its libvirtd serves no TLS yet) and gives the lines for libvirtd.conf and
    qemu.conf: libvirtd stops, they go in, and it starts again with ``--listen``. It stays down longer than
    the agents' inventory scan, as a restart that probes QEMU again does, and each Host keeps its
    migration address all along (else it would take no migrations and get no new certificate).
    """
    cluster, started = release.cluster, time.monotonic()

    def told() -> list[dict[str, Any]] | None:
        found = [
            next((line for line in agent_log(cluster, node.name) if line["msg"].startswith(NO_TLS_YET)), None)
            for node in cluster.nodes
        ]
        return [line for line in found if line is not None] if all(found) else None

    try:
        lines = wait_until(told, 120, every=1, what="both agents to tell their libvirtd's TLS lines")
    except AssertionError as exc:
        csrs = cluster.kubectl("get", "csr", check=False).stdout
        raise AssertionError(f"{exc}\n{csrs}\n{pods_report(cluster)}") from exc
    got = time.monotonic() - started
    hosts = Watch(cluster, "hosts", fields="{.object.metadata.name}|{.object.status.hypervisor.migrationAddress}")
    try:
        for daemon in libvirtds:
            daemon.halt()
        time.sleep(AGENT_SCAN_SECONDS + 1)
        for daemon, line in zip(libvirtds, lines, strict=True):
            daemon.serve_tls(line["libvirtd_conf"], line["qemu_conf"])

        def reconnected() -> bool:
            logs = [agent_log(cluster, node.name) for node in cluster.nodes]
            return all(sum(line["msg"] == "connected to libvirt" for line in log) >= 2 for log in logs)

        wait_until(reconnected, 60, every=0.5, what="both agents connected to their libvirtd again")
    finally:
        hosts.stop()
    published = {(name, address) for _, (name, address) in hosts.lines}
    assert published == {(node.name, node.address) for node in cluster.nodes}, published
    print(
        f"both agents had their certificate and told their libvirtd's TLS lines {got:.1f}s after every pod was Ready; "
        f"both libvirtds down {AGENT_SCAN_SECONDS + 1}s and serving TLS {time.monotonic() - started - got:.1f}s after"
    )


@pytest.fixture
def vm_namespace(release: Release, libvirtds: list[NodeLibvirtd]) -> Iterator[str]:
    """A namespace for the test's VMs; any domain of it left on either node by a failure is removed after."""
    name = f"c-{uuid.uuid4().hex[:8]}"
    release.cluster.kubectl("create", "namespace", name)
    yield name
    release.cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
    for daemon in libvirtds:
        with contextlib.closing(daemon.connect()) as conn:
            for domain in conn.listAllDomains(0):
                if domain.name().startswith(f"{name}_"):
                    if domain.isActive():
                        domain.destroy()
                    domain.undefine()


def domain_of(daemon: NodeLibvirtd, name: str) -> tuple[int, int] | None:
    """(state, id) of the domain ``name`` on the node's libvirtd, or None."""
    with contextlib.closing(daemon.connect()) as conn:
        try:
            domain = conn.lookupByName(name)
        except libvirt.libvirtError:
            return None
        return int(domain.state()[0]), int(domain.ID())


def agent_log(cluster: Cluster, node: str) -> list[dict[str, Any]]:
    """The JSON lines of the log of ``node``'s agent (``kubectl logs``)."""
    (pod,) = [p["metadata"]["name"] for p in pods(cluster, "agent") if p["spec"]["nodeName"] == node]
    text = cluster.kubectl("logs", "-n", NAMESPACE, pod).stdout
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def running_vm(api: httpx.Client, namespace: str, name: str) -> dict[str, Any]:
    """Create a small diskless VM through the gateway and start it; its view once Running."""
    created = api.post("/vms", json={"name": name, "namespace": namespace, "cpu": 1, "memory": "32Mi"})
    assert created.status_code in (200, 201), created.text
    started = api.post(f"/vms/{name}/action", params={"namespace": namespace, "wait": 120}, json={"action": "start"})
    assert started.status_code == 200, started.text
    view = api.get(f"/vms/{name}", params={"namespace": namespace}).json()["data"]
    assert view["phase"] == "Running", view
    return dict(view)


def test_both_nodes_and_their_hosts_are_ready_through_the_gateways_service(release: Release) -> None:
    cluster = release.cluster
    names = {node.name for node in cluster.nodes}

    # helm's --wait lets a DaemonSet through with maxUnavailable (1) of its pods not Ready yet.
    def agents_ready() -> list[dict[str, Any]] | None:
        found = pods(cluster, "agent")
        return found if len(found) == 2 and all(map(ready, found)) else None

    try:
        agents = wait_until(agents_ready, 90, what="both agents Ready")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{pods_report(cluster)}") from exc
    assert {p["spec"]["nodeName"] for p in agents} == names
    for node in cluster.nodes:
        found = cluster.kubectl.get_json("node", node.name)
        assert any(c["type"] == "Ready" and c["status"] == "True" for c in found["status"]["conditions"])
    with release.client() as api:

        def connected() -> list[dict[str, Any]] | None:
            hosts = api.get("/hosts").json()["data"]["hosts"]
            return hosts if {h["name"] for h in hosts if h["status"] == "connected"} == names else None

        hosts = wait_until(connected, 90, what="both nodes' Hosts connected")
    assert len({h["id"] for h in hosts}) == 2, "each node's agent keeps a Host of its own"
    for node in cluster.nodes:
        status = cluster.kubectl.get_json("host", node.name)["status"]
        assert any(c["type"] == "Ready" and c["status"] == "True" for c in status["conditions"]), status
        assert status["hypervisor"]["migrationAddress"] == node.address
        assert status["hypervisor"]["migrationUri"] == f"qemu+tls://{node.address}/system", "the chart's default"


def test_each_nodes_libvirtd_serves_tls_with_its_agents_certificate_from_the_migration_ca(release: Release) -> None:
    """What ``openssl s_client -connect <node>:16514 -CAfile <the CA Secret's tls.crt>`` shows a node's admin."""
    cluster = release.cluster
    secret = cluster.kubectl.get_json("secret", "vapor-migration-ca", "-n", NAMESPACE)
    ca_pem = base64.b64decode(secret["data"]["tls.crt"]).decode()
    trusting = ssl.create_default_context(cadata=ca_pem)  # checks the chain and that the certificate names the IP
    for node in cluster.nodes:
        with (
            socket.create_connection((node.address, TLS_PORT), timeout=10) as raw,
            trusting.wrap_socket(raw, server_hostname=node.address) as tls,
        ):
            served = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True) or b"")
            # No client certificate: the daemon takes nobody who holds none from the migration CA (it hangs up).
            try:
                refused = tls.recv(1) == b""
            except (ssl.SSLError, ConnectionError):
                refused = True
            except TimeoutError:
                refused = False
        assert served.subject.rfc4514_string() == f"CN=vapor-migration:{node.name}", served.subject
        assert refused, f"{node.name}'s libvirtd kept a TLS client without a certificate"
        # Nothing in clear: plain qemu+tcp is not served.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((node.address, TCP_PORT), timeout=10).close()


def test_a_vm_is_live_migrated_through_the_rest_api_to_the_other_nodes_libvirt(
    release: Release, libvirtds: list[NodeLibvirtd], vm_namespace: str
) -> None:
    cluster, ns = release.cluster, vm_namespace
    names = [node.name for node in cluster.nodes]
    domain = f"{ns}_mover"
    with release.client() as api:
        view = running_vm(api, ns, "mover")
        source = names.index(view["host"])
        target = 1 - source
        assert domain_of(libvirtds[source], domain) is not None
        assert domain_of(libvirtds[target], domain) is None

        started = time.monotonic()
        asked = api.post("/vms/mover/migrate", params={"namespace": ns}, json={"destination_host_id": names[target]})
        assert asked.status_code == 201, asked.text
        migration = asked.json()["data"]["migration_id"]

        def ended() -> dict[str, Any] | None:
            got = api.get(f"/migrations/{migration}").json()["data"]
            return got if got["phase"] in ("Succeeded", "Failed", "Cancelled") else None

        try:
            final = wait_until(ended, 120, every=0.5, what="the migration to end")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{pods_report(cluster)}") from exc
        took = time.monotonic() - started
        assert final["phase"] == "Succeeded", final
        print(f"in-cluster live migration between nodes over TLS, POST to Succeeded: {took:.1f}s")
        # Over TLS: the source's agent dialled the target's libvirtd at qemu+tls (its log says so, as kubectl logs).
        dialled = [line["uri"] for line in agent_log(cluster, names[source]) if line["msg"] == "migration starting"]
        assert [uri.split("?")[0] for uri in dialled] == [f"qemu+tls://{cluster.nodes[target].address}/system"], dialled

        # The target's agent adopts the domain (the VM's phase follows in its own time, as on the testbed).
        def adopted() -> dict[str, Any] | None:
            view = api.get("/vms/mover", params={"namespace": ns}).json()["data"]
            return view if view["host"] == names[target] and view["phase"] == "Running" else None

        try:
            wait_until(adopted, 90, every=0.5, what="the VM Running on the target")
        except AssertionError as exc:
            status = cluster.kubectl.get_json("vvm", "mover", "-n", ns).get("status")
            events = cluster.kubectl("get", "events", "-n", ns, check=False).stdout
            raise AssertionError(f"{exc}\n{status}\n{events}\n{pods_report(cluster)}") from exc
    on_target = domain_of(libvirtds[target], domain)
    assert on_target is not None and on_target[0] == libvirt.VIR_DOMAIN_RUNNING, on_target
    assert domain_of(libvirtds[source], domain) is None, "gone from the source's libvirt"


def test_draining_the_node_of_the_gateway_and_operators_moves_them_and_vms_keep_running(
    release: Release, libvirtds: list[NodeLibvirtd], vm_namespace: str
) -> None:
    cluster, ns = release.cluster, vm_namespace
    first, second = cluster.nodes
    gateway, operators = pods(cluster, "gateway"), pods(cluster, "operator")
    assert {p["spec"]["nodeName"] for p in [*gateway, *operators]} == {first.name}, "installed on the first node"
    with release.client() as api:
        view = running_vm(api, ns, "stays")
    daemon = libvirtds[[n.name for n in cluster.nodes].index(view["host"])]
    before = domain_of(daemon, f"{ns}_stays")
    assert before is not None

    started = time.monotonic()
    try:
        drained = cluster.kubectl(
            "drain", first.name, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=180s", check=False
        )
        assert drained.returncode == 0, f"{drained.stdout}{drained.stderr}\n{pods_report(cluster)}"

        def moved() -> bool:
            found = [*pods(cluster, "gateway"), *pods(cluster, "operator")]
            live = [p for p in found if "deletionTimestamp" not in p["metadata"]]
            return len(live) == 3 and all(p["spec"].get("nodeName") == second.name and ready(p) for p in live)

        wait_until(moved, 180, every=1, what="the gateway and both operators Ready on the second node")

        def answers() -> bool:
            try:
                return httpx.get(f"{release.url}/readyz", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(answers, 60, every=0.5, what="the gateway's Service to answer")
        took = time.monotonic() - started
        print(f"drain to gateway and operators Ready on the other node: {took:.1f}s")
        with release.client() as api:  # a login through the moved gateway, and the VM as it was
            after = api.get("/vms/stays", params={"namespace": ns}).json()["data"]
        assert after["phase"] == "Running" and after["host"] == view["host"], after
        assert domain_of(daemon, f"{ns}_stays") == before, "the same domain still runs (drain evicts pods, not VMs)"
        agents = pods(cluster, "agent")
        assert {p["spec"]["nodeName"] for p in agents} == {first.name, second.name}, "DaemonSet pods stay"
    finally:
        cluster.kubectl("uncordon", first.name, check=False)
    assert not cluster.kubectl.get_json("node", first.name)["spec"].get("unschedulable")


def test_helm_upgrade_rolls_the_agents_one_node_at_a_time_and_no_host_is_lost(
    release: Release, libvirtds: list[NodeLibvirtd], vm_namespace: str
) -> None:
    cluster, ns = release.cluster, vm_namespace
    with release.client() as api:
        view = running_vm(api, ns, "rolled")
    daemon = libvirtds[[n.name for n in cluster.nodes].index(view["host"])]
    before = domain_of(daemon, f"{ns}_rolled")
    assert before is not None
    agents = {p["metadata"]["uid"] for p in pods(cluster, "agent")}
    # The same image under a new tag on both nodes: every pod template changes, as with a new release.
    tag = f"upgrade-{uuid.uuid4().hex[:6]}"
    for node in cluster.nodes:
        tagged = node.runtime.ctr("images", "tag", f"{REPOSITORY}:{release.values['image.tag']}", f"{REPOSITORY}:{tag}")
        assert tagged.returncode == 0, tagged.stderr

    with contextlib.closing(daemon.connect()) as virt, Timeline(cluster, ns, virt) as timeline:
        seconds = release.upgrade(**{"image.tag": tag})

    # A new agent on each node, Ready, on the new tag (the old ones gone).
    def renewed() -> list[dict[str, Any]] | None:
        found = pods(cluster, "agent")
        fresh = len(found) == 2 and not {p["metadata"]["uid"] for p in found} & agents and all(map(ready, found))
        return found if fresh else None

    found = wait_until(renewed, 90, every=0.5, what="a new Ready agent on each node")
    assert {p["spec"]["nodeName"] for p in found} == {node.name for node in cluster.nodes}
    assert {p["spec"]["containers"][0]["image"] for p in found} == {f"{REPOSITORY}:{tag}"}
    # One node at a time (maxUnavailable 1): each node lost its Ready agent once, and the second node's
    # outage began only after the first one's ended.
    outages = timeline.agent_outages()
    assert sorted(outages) == sorted(node.name for node in cluster.nodes), outages
    assert all(len(spans) == 1 for spans in outages.values()), outages
    (_, first_end), (second_start, _) = sorted(spans[0] for spans in outages.values())
    assert first_end <= second_start, outages
    # The correctness bound, not a speed target: neither agent's heartbeat Lease went unrenewed for its
    # duration (the operator would judge that Host lost and mark its VMs Unknown), both Hosts stayed Ready.
    gaps = timeline.lease_gaps()
    assert sorted(gaps) == sorted(outages) and all(gap < duration for gap, duration in gaps.values()), gaps
    hosts = timeline.host_readiness()
    assert sorted(hosts) == sorted(outages) and all(set(s) == {"True"} for s in hosts.values()), hosts
    # The VM was Running in every version the API server sent; its domain on its node never stopped.
    assert set(timeline.vm_phases()["rolled"]) == {"Running"}, timeline.vm_phases()
    samples = timeline.domains[f"{ns}_rolled"]
    assert samples and {(s.state, s.id) for s in samples} == {before}, samples[:3]
    assert domain_of(daemon, f"{ns}_rolled") == before
    took = ", ".join(f"{node} {spans[0][1] - spans[0][0]:.1f}s" for node, spans in sorted(outages.items()))
    unrenewed = ", ".join(f"{node} {gap:.1f}s of {duration}s" for node, (gap, duration) in sorted(gaps.items()))
    print(
        f"\nhelm upgrade on two nodes to every pod Ready: {seconds:.1f}s; agent down per node: {took}; "
        f"Lease unrenewed at most: {unrenewed}"
    )

"""cloud-init on the agent: the NoCloud seed ISO of a VM, read back as the guest would, through real libvirt and QEMU.

No guest OS runs here (the test guest's boot is tests/guest's), so these tests
check what the guest would be given: the seed CD-ROM and the guest-agent
channel in the domain, the ISO's volume id and documents (read back with
pycdlib), user-data from a Secret, the conditions of bad or missing input, and
that a change of cloud-init rewrites the seed without touching the running
domain, saying RestartRequired until a restart.
"""

from __future__ import annotations

import io
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import libvirt
import pycdlib
import yaml

from vapor.kube import Kube
from vapor.model import MetadataPatch, VirtualMachine, VirtualMachineSpec, names

from ..support.agent import AgentProcess
from ..support.wait import eventually
from .conftest import place_vm
from .test_vms import domain_of, patch, qemu_id, reaches, vm_name, vm_status

KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGtMz2vfG7uZ1Lz0S3XyQWbX9y2K7Xh0n4m8s1dCq3bQ alice@laptop"
KEY_B = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk2qv1bq8dP3cLhS8m3Yq0p0Zb1xW4mT5a6s7d8f9g0 bob@desk"


def seed_documents(path: Path) -> tuple[str, dict[str, str]]:
    """The ISO's volume id and its documents by name, read as the guest's kernel reads them (Rock Ridge names)."""
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        volume = iso.pvd.volume_identifier.decode().strip()
        found: dict[str, str] = {}
        for name in ("meta-data", "user-data", "network-config"):
            out = io.BytesIO()
            try:
                iso.get_file_from_iso_fp(out, rr_path=f"/{name}")
            except pycdlib.pycdlibexception.PyCdlibInvalidInput:
                continue
            found[name] = out.getvalue().decode()
        return volume, found
    finally:
        iso.close()


def condition(vm: VirtualMachine, kind: str) -> tuple[str, str] | None:
    found = vm.condition(kind)
    return (found.status, found.reason) if found else None


async def ready_reason(
    kube: Kube, namespace: str, name: str, reason: str, agent: AgentProcess, saying: str = ""
) -> VirtualMachine:
    async def probe() -> VirtualMachine | None:
        vm = await vm_status(kube, namespace, name)
        cond = vm.condition(names.ConditionType.READY)
        return vm if cond and (cond.status, cond.reason) == ("False", reason) and saying in cond.message else None

    try:
        return await eventually(probe, 60, f"{name}'s Ready to say {reason}")  # type: ignore[no-any-return]
    except AssertionError:
        print(agent.log()[-20000:])
        raise


async def event_texts(kube: Kube, namespace: str) -> str:
    events = await kube.core.list_namespaced_event(namespace)
    return "\n".join(f"{e.reason} {e.message} {e.note if hasattr(e, 'note') else ''}" for e in events.items)


async def make_secret(kube: Kube, namespace: str, name: str, data: dict[str, str]) -> None:
    body: Any = {"metadata": {"name": name}, "stringData": data}
    await kube.core.create_namespaced_secret(namespace, body)


async def test_the_seed_cdrom_carries_meta_data_and_user_data_with_the_keys_merged(
    kube: Kube, agent: AgentProcess, namespace: str, virt: libvirt.virConnect
) -> None:
    name = vm_name()
    user_data = "#cloud-config\npackage_update: false\nssh_authorized_keys:\n  - " + KEY_A + "\n"
    network = "version: 2\nethernets:\n  eth0:\n    dhcp4: true\n"
    made = await place_vm(
        kube,
        namespace,
        name,
        agent.node_name,
        cloud_init={
            "user_data": user_data,
            "ssh_authorized_keys": [KEY_B, KEY_A],
            "hostname": "guest-one",
            "network_data": network,
        },
    )
    vm = await reaches(kube, namespace, name, "Running", agent)
    dom = domain_of(virt, vm)
    devices = ET.fromstring(dom.XMLDesc(0)).find("devices")
    assert devices is not None
    cdroms = [d for d in devices.iterfind("disk") if d.get("device") == "cdrom"]
    assert len(cdroms) == 1 and cdroms[0].find("readonly") is not None
    seed = Path(cdroms[0].find("source").get("file"))  # type: ignore[union-attr]
    assert seed == agent.storage_dir / (made.metadata.uid or "") / "cidata.iso"  # in the VM's own folder
    assert seed.stat().st_mode & 0o077 == 0  # user-data may hold secrets: no other user of the host reads it
    channels = [c.find("target") for c in devices.iterfind("channel")]
    assert any(t is not None and t.get("name") == "org.qemu.guest_agent.0" for t in channels)

    volume, docs = seed_documents(seed)
    assert volume == "cidata"
    meta = yaml.safe_load(docs["meta-data"])
    assert meta == {"instance-id": made.metadata.uid, "local-hostname": "guest-one"}
    assert docs["user-data"].startswith("#cloud-config\n")
    config = yaml.safe_load(docs["user-data"])
    assert config["package_update"] is False  # the user's own settings kept
    assert config["ssh_authorized_keys"] == [KEY_A, KEY_B]  # the user's key kept, the other added once
    assert docs["network-config"] == network
    # No guest OS runs here: its agent does not answer; the guest booted with the current seed.
    assert condition(vm, names.ConditionType.AGENT_CONNECTED) == ("False", "NotConnected")
    assert condition(vm, names.ConditionType.RESTART_REQUIRED) == ("False", "CloudInitCurrent")


async def test_a_vm_without_user_data_gets_a_cloud_config_of_its_keys_and_its_name_as_hostname(
    kube: Kube, agent: AgentProcess, namespace: str, virt: libvirt.virConnect
) -> None:
    name = vm_name()
    await place_vm(
        kube, namespace, name, agent.node_name, run_strategy="Halted", cloud_init={"ssh_authorized_keys": [KEY_A]}
    )
    vm = await reaches(kube, namespace, name, "Stopped", agent)
    _, docs = seed_documents(agent.storage_dir / (vm.metadata.uid or "") / "cidata.iso")
    assert yaml.safe_load(docs["meta-data"])["local-hostname"] == name
    assert docs["user-data"].startswith("#cloud-config\n")
    assert yaml.safe_load(docs["user-data"]) == {"ssh_authorized_keys": [KEY_A]}
    assert "network-config" not in docs
    assert vm.condition(names.ConditionType.AGENT_CONNECTED) is None  # nothing runs


async def test_user_data_from_a_secret_waits_for_it_and_never_shows_its_content(
    kube: Kube, agent: AgentProcess, namespace: str, virt: libvirt.virConnect
) -> None:
    name, secret = vm_name(), f"ci-{uuid.uuid4().hex[:6]}"
    password = f"pw-{uuid.uuid4().hex}"
    ref = {"name": secret, "key": "config"}
    await place_vm(kube, namespace, name, agent.node_name, cloud_init={"user_data_secret_ref": ref})
    vm = await ready_reason(kube, namespace, name, "CloudInitSecretNotFound", agent)
    assert vm.status and vm.status.phase == "Pending"
    assert virt.listAllDomains(0) == [] or all(d.name() != f"{namespace}_{name}" for d in virt.listAllDomains(0))

    await make_secret(kube, namespace, secret, {"other": "x"})  # the Secret, but not its key yet
    await ready_reason(kube, namespace, name, "CloudInitSecretNotFound", agent, saying="has no key 'config'")

    user_data = f"#cloud-config\nchpasswd:\n  users:\n    - name: debian\n      password: {password}\n"
    await kube.core.patch_namespaced_secret(secret, namespace, {"stringData": {"config": user_data}})
    vm = await reaches(kube, namespace, name, "Running", agent)  # it waited, and starts now
    _, docs = seed_documents(agent.storage_dir / (vm.metadata.uid or "") / "cidata.iso")
    assert docs["user-data"] == user_data

    assert password not in agent.log()
    assert password not in await event_texts(kube, namespace)
    assert password not in (await vm_status(kube, namespace, name)).model_dump_json()


async def test_user_data_that_claims_cloud_config_but_is_not_yaml_is_refused_until_fixed(
    kube: Kube, agent: AgentProcess, namespace: str, virt: libvirt.virConnect
) -> None:
    name = vm_name()
    bad = "#cloud-config\nusers: [debian\n  - oops: : :\n"
    await place_vm(kube, namespace, name, agent.node_name, cloud_init={"user_data": bad})
    vm = await ready_reason(kube, namespace, name, "InvalidCloudInit", agent)
    cond = vm.condition(names.ConditionType.READY)
    assert cond is not None and "not valid YAML" in cond.message and "oops" not in cond.message
    assert all(d.name() != f"{namespace}_{name}" for d in virt.listAllDomains(0))  # nothing half-made

    fixed = VirtualMachineSpec.partial(cloud_init={"user_data": "#cloud-config\nusers: [default]\n"})
    await patch(kube, namespace, name, spec=fixed)
    await reaches(kube, namespace, name, "Running", agent)


async def test_user_data_over_64_kib_after_merging_the_keys_is_refused(
    kube: Kube, agent: AgentProcess, namespace: str
) -> None:
    name = vm_name()
    big = "#!/bin/sh\n" + "#" * (65536 - 20) + "\n"  # within the CRD's limit alone; the keys' part tips it over
    await place_vm(
        kube, namespace, name, agent.node_name, cloud_init={"user_data": big, "ssh_authorized_keys": [KEY_A]}
    )
    vm = await ready_reason(kube, namespace, name, "CloudInitTooLarge", agent)
    cond = vm.condition(names.ConditionType.READY)
    assert cond is not None and "65536" in cond.message


async def test_a_changed_cloud_init_rewrites_the_seed_and_asks_for_a_restart_without_restarting(
    kube: Kube, agent: AgentProcess, namespace: str, virt: libvirt.virConnect
) -> None:
    name = vm_name()
    await place_vm(kube, namespace, name, agent.node_name, cloud_init={"hostname": "first"})
    vm = await reaches(kube, namespace, name, "Running", agent)
    dom = domain_of(virt, vm)
    seed = agent.storage_dir / (vm.metadata.uid or "") / "cidata.iso"
    running, definition = qemu_id(virt, dom), dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)

    await patch(kube, namespace, name, spec=VirtualMachineSpec.partial(cloud_init={"hostname": "second"}))

    async def restart_required() -> VirtualMachine | None:
        vm = await vm_status(kube, namespace, name)
        wanted = ("True", "CloudInitChanged")
        return vm if condition(vm, names.ConditionType.RESTART_REQUIRED) == wanted else None

    await eventually(restart_required, 60, "RestartRequired")
    assert yaml.safe_load(seed_documents(seed)[1]["meta-data"])["local-hostname"] == "second"
    # The running domain was neither restarted nor redefined: the seed's content is not in its definition.
    assert qemu_id(virt, dom) == running
    assert _without_metadata(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)) == _without_metadata(definition)

    await patch(kube, namespace, name, metadata=MetadataPatch(annotations={names.RESTART_ANNOTATION: "r1"}))

    async def restarted() -> VirtualMachine | None:
        vm = await vm_status(kube, namespace, name)
        current = condition(vm, names.ConditionType.RESTART_REQUIRED) == ("False", "CloudInitCurrent")
        return vm if vm.status and vm.status.last_restart_request == "r1" and current else None

    await eventually(restarted, 60, "the restart to clear RestartRequired")
    assert qemu_id(virt, dom) != running


def _without_metadata(xml: str) -> str:
    root = ET.fromstring(xml)
    for meta in root.findall("metadata"):
        root.remove(meta)
    return ET.tostring(root, encoding="unicode")


def test_a_script_and_keys_become_a_multipart_document_cloud_init_runs_both_of() -> None:
    from email import message_from_string

    from vapor.cloudinit import user_data

    script = "#!/bin/sh\necho hello > /run/hello\n"
    text = user_data(script, [KEY_A])
    message = message_from_string(text)
    assert message.get_content_type() == "multipart/mixed"
    parts = {p.get_content_type(): p.get_payload(decode=True).decode() for p in message.get_payload()}  # type: ignore[union-attr]
    assert parts["text/x-shellscript"] == script
    assert yaml.safe_load(parts["text/cloud-config"]) == {"ssh_authorized_keys": [KEY_A]}
    assert user_data(script, []) == script  # without keys, the user's document as it is


def test_cloud_config_that_is_yaml_but_not_a_mapping_is_refused() -> None:
    import pytest

    from vapor.cloudinit import CloudInitError, user_data

    with pytest.raises(CloudInitError) as caught:
        user_data("#cloud-config\n- just\n- a list\n", [])
    assert caught.value.reason == "InvalidCloudInit" and "mapping" in caught.value.message
    assert user_data("#cloud-config-archive\n- type: text/x-shellscript\n", []).startswith("#cloud-config-archive")


def test_user_data_over_64_kib_is_refused_before_it_is_parsed() -> None:
    import pytest

    from vapor.cloudinit import CloudInitError, user_data

    with pytest.raises(CloudInitError) as caught:
        user_data("#cloud-config\n" + "[" * 70000, [])  # not YAML either: the size is what is told
    assert caught.value.reason == "CloudInitTooLarge" and "70014 bytes;" in caught.value.message
